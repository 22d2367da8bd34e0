// SPDX-License-Identifier: GPL-3.0-or-later
//
// ZS² Generate: a Flamenco job type (job compiler script) that samples one ZS² video clip on a render farm.
//
// Put this file in the `scripts/` folder next to the `flamenco-manager` executable; the Manager loads it
// as the job type "zss-generate" (the file name without `.js`). See README ▸ "Render farm: Flamenco".
//
// The compiled job has one or two tasks:
//   depth-maps (task type "blender", only with use_depth): Blender renders the depth maps of the clip's
//       frames from the chosen camera, headless, with the ZS² add-on's own depth renderer
//       (integrations/flamenco/render_depth.py), into <output>/depth/.
//   generate   (task type "zss"): `zss generate … --out <output> --id clip` writes the clip into
//       <output>/clip/; with depth it conditions on <output>/depth/ and depends on depth-maps.
// The generate task has its own task type so that only Workers that list "zss" in the `task_types` of
// their flamenco-worker.yaml (the GPU machines with the zss command installed) are given it.
//
// Flamenco's globals used here, as its bundled job types use them: author.Task, author.Command,
// job.addTask, task.addCommand, task.addDependency, path.join, formatTimestampLocal, print.
// Every command argument is built as a string (the Worker passes them as-is, without a shell).

const JOB_TYPE = {
    label: "ZS² Generate",
    description: "Sample a ZS² video clip with `zss generate`, optionally following depth maps rendered from a camera",
    settings: [
        // What to generate.
        { key: "prompt", type: "string", required: true, description: "What the clip shows" },
        { key: "negative_prompt", type: "string", default: "", description: "What the clip should not show" },
        { key: "lam", type: "float", default: 0.01, propargs: { min: 0, max: 1, precision: 4 },
          description: "λ: noise divergence between consecutive frames (0: the same noise, larger: more motion)" },
        { key: "mu", type: "float", default: 0.98, propargs: { min: 0, max: 1, precision: 3 },
          description: "μ: temporal attention momentum in [0, 1] (higher: steadier frames)" },
        { key: "frames", type: "int32", required: true, default: 16, propargs: { min: 1, max: 1024 },
          eval: "C.scene.frame_end - C.scene.frame_start + 1",
          evalInfo: { showLinkButton: true, description: "Number of frames in the scene range" },
          description: "Number of frames in the clip" },
        { key: "frame_start", type: "int32", default: 1, eval: "C.scene.frame_start", visible: "submission",
          description: "First scene frame the depth maps are rendered from (with depth)" },
        { key: "width", type: "int32", required: true, default: 512, propargs: { min: 64, max: 2048, step: 8 },
          description: "Clip width in pixels, a multiple of 8" },
        { key: "height", type: "int32", required: true, default: 512, propargs: { min: 64, max: 2048, step: 8 },
          description: "Clip height in pixels, a multiple of 8" },
        { key: "steps", type: "int32", default: 30, propargs: { min: 1, max: 500 }, description: "Denoising steps" },
        { key: "guidance", type: "float", default: 7.5, propargs: { min: 0, max: 50 },
          description: "Classifier-free guidance scale" },
        { key: "seed", type: "int32", default: 0, description: "Random seed (the same seed gives the same clip)" },
        { key: "model", type: "string", required: true, default: "",
          description: "SD 1.x model as the GPU Workers see it: a diffusers folder, a .safetensors file, a hub id already in their Hugging Face cache, or builtin:textures (64x64)" },
        { key: "fps", type: "float", default: 24, eval: "C.scene.render.fps / C.scene.render.fps_base",
          visible: "hidden", description: "Frame rate of the clip's MP4" },

        // Seamless loop and tiling.
        { key: "loop", type: "bool", default: false, description: "Seamless loop: the last frame flows into the first" },
        { key: "tile_x", type: "bool", default: false, description: "Frames tile seamlessly left to right" },
        { key: "tile_y", type: "bool", default: false, description: "Frames tile seamlessly top to bottom" },

        // Depth control: maps rendered from a camera of the blend file by a Blender task.
        { key: "use_depth", type: "bool", default: false,
          description: "Follow the scene's layout: render depth maps from the camera first (a Blender task), then condition the clip on them" },
        { key: "camera", type: "string", default: "", visible: "submission",
          eval: "C.scene.camera.name if C.scene.camera else ''",
          description: "Camera object the depth maps are rendered from (with depth)" },
        { key: "control_scale", type: "float", default: 1.0, propargs: { min: 0, max: 5 },
          description: "Strength of the depth ControlNet (with depth)" },
        { key: "controlnet", type: "string", default: "",
          description: "Depth ControlNet (folder, file or hub id); empty: the model's own default" },
        { key: "depth_script", type: "string", subtype: "file_path", default: "", visible: "submission",
          description: "render_depth.py as the Workers see it: <ZS² add-on folder>/integrations/flamenco/render_depth.py (with depth)" },
        { key: "blendfile", type: "string", default: "", visible: "web",
          description: "Path of the blend file the depth maps are rendered from (filled in by Flamenco's Blender add-on)" },

        // Where the clip goes; render_output_root + job name + timestamp, like Flamenco's own job types.
        { key: "render_output_root", type: "string", subtype: "dir_path", required: true, visible: "submission",
          description: "Base folder on the shared storage; the job's folder is created inside it" },
        { key: "render_output_path", type: "string", subtype: "dir_path", editable: false,
          eval: "str(Path(abspath(settings.render_output_root), jobname, '{timestamp}'))",
          description: "The job's folder: the clip goes into its clip/ folder, depth maps into depth/" },

        // How the Workers run zss.
        { key: "zss_exe", type: "string", default: "zss", visible: "web",
          description: "The zss command on the GPU Workers (a path, or a Manager variable such as {zss})" },
    ],
};

// Task types; Workers run only the types listed in their flamenco-worker.yaml `task_types`.
const DEPTH_TASK_TYPE = "blender";
const GENERATE_TASK_TYPE = "zss";
// The clip folder inside the job's folder (`zss generate --id`).
const CLIP_ID = "clip";

function compileJob(job) {
    print("ZS² Generate job submitted:", job.name);
    const settings = job.settings;
    const outputDir = outputPath(job);
    // Show the folder actually used when the job is looked at later (as simple-blender-render does).
    settings.render_output_path = outputDir;

    const generateTask = authorGenerateTask(settings, outputDir);
    if (setting(settings, "use_depth")) {
        const depthTask = authorDepthTask(settings, outputDir);
        job.addTask(depthTask);
        generateTask.addDependency(depthTask);
    }
    job.addTask(generateTask);
}

// A setting's value, or its JOB_TYPE default when the submitter left it out.
function setting(settings, key) {
    const value = settings[key];
    if (value !== undefined && value !== null) {
        return value;
    }
    const spec = JOB_TYPE.settings.find((s) => s.key === key);
    return spec ? spec.default : undefined;
}

function requireText(settings, key, why) {
    const raw = setting(settings, key);
    const value = raw === undefined || raw === null ? "" : `${raw}`.trim();
    if (!value) {
        throw `ZS² Generate: setting "${key}" is empty — ${why}`;
    }
    return value;
}

// render_output_path with {timestamp} filled in, as Flamenco's built-in job types do. Jobs submitted
// through the API get no `eval` (Blender's add-on runs those): render_output_root/<job name>/{timestamp},
// what the eval would give, is used then.
function outputPath(job) {
    let template = job.settings.render_output_path;
    if (!template) {
        const root = requireText(job.settings, "render_output_root", "name the base folder on the shared storage the clip goes into");
        template = path.join(root, job.name, "{timestamp}");
    }
    return template.replace(/{([^}]+)}/g, (match, name) =>
        name === "timestamp" ? formatTimestampLocal(job.created) : match
    );
}

function depthDir(outputDir) {
    return path.join(outputDir, "depth");
}

// Blender, headless on a Worker: open the blend file, run render_depth.py, which renders the depth maps
// with the add-on's depth renderer. --python-exit-code makes a failing script fail the task (Blender
// otherwise exits 0 after a Python error in background mode).
function authorDepthTask(settings, outputDir) {
    const blendfile = requireText(settings, "blendfile", "depth maps are rendered from a blend file: submit from Blender with Flamenco's add-on, or set it to the .blend on the shared storage");
    const camera = requireText(settings, "camera", "name the camera object the depth maps are rendered from");
    const script = requireText(settings, "depth_script", "set it to render_depth.py as the Workers see it (the ZS² add-on's integrations/flamenco/ folder)");

    const task = author.Task("depth-maps", DEPTH_TASK_TYPE);
    task.addCommand(author.Command("blender-render", {
        exe: "{blender}",
        exeArgs: "{blenderArgs}",
        argsBefore: [],
        blendfile: blendfile,
        args: [
            "--python-exit-code", "1",
            "--python", script,
            "--",
            "--out", depthDir(outputDir),
            "--camera", camera,
            "--frame-start", `${setting(settings, "frame_start")}`,
            "--frames", `${setting(settings, "frames")}`,
            "--size", `${setting(settings, "width")}x${setting(settings, "height")}`,
        ],
    }));
    return task;
}

// `zss generate`, run directly (no shell) on a Worker that takes "zss" tasks. Options use the
// --option=value form and the prompt comes after "--", so text that starts with "-" stays text.
function authorGenerateTask(settings, outputDir) {
    requireText(settings, "prompt", "describe what the clip shows");
    const prompt = `${setting(settings, "prompt")}`;
    const args = [
        "generate",
        `--negative=${setting(settings, "negative_prompt")}`,
        `--frames=${setting(settings, "frames")}`,
        `--lam=${setting(settings, "lam")}`,
        `--mu=${setting(settings, "mu")}`,
        `--steps=${setting(settings, "steps")}`,
        `--guidance=${setting(settings, "guidance")}`,
        `--size=${setting(settings, "width")}x${setting(settings, "height")}`,
        `--seed=${setting(settings, "seed")}`,
        `--model=${requireText(settings, "model", "name the SD 1.x model the GPU Workers load (a folder, .safetensors file or hub id they can read)")}`,
        `--fps=${setting(settings, "fps")}`,
    ];
    if (setting(settings, "use_depth")) {
        args.push(`--control-depth=${depthDir(outputDir)}`);
        args.push(`--control-scale=${setting(settings, "control_scale")}`);
        const controlnet = `${setting(settings, "controlnet")}`.trim();
        if (controlnet) {
            args.push(`--controlnet=${controlnet}`);
        }
    }
    if (setting(settings, "loop")) {
        args.push("--loop");
    }
    const tile = (setting(settings, "tile_x") ? "x" : "") + (setting(settings, "tile_y") ? "y" : "");
    if (tile) {
        args.push(`--tile=${tile}`);
    }
    args.push(`--out=${outputDir}`, `--id=${CLIP_ID}`, "--", prompt);

    const task = author.Task("generate", GENERATE_TASK_TYPE);
    task.addCommand(author.Command("exec", {
        exe: requireText(settings, "zss_exe", "name the zss command on the GPU Workers"),
        args: args,
    }));
    return task;
}
