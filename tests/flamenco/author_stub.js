// A stand-in for Flamenco Manager's job-compiler runtime, so a job type script can be compiled by node.
//
// Flamenco runs job types in goja with these globals (internal/manager/job_compilers: scripts.go,
// author.go, js_globals.go, js_path.go); this file defines the ones job types use, with the same
// behaviour where it matters to a script:
//   author.Task(name, type)   trims both, refuses empty ones (Go returns an error → a JS exception);
//                             the task gets an id, priority 50, addCommand() and addDependency()
//   author.Command(name, parameters)
//   job.addTask(task), job.name, job.created (a Date), job.settings, job.metadata
//   path.join / dirname / basename / stem (forward slashes, cleaned, as crosspath does)
//   formatTimestampLocal(date) → "2006-01-02_150405" in local time; print(...) and alert(...)
//
// Usage: node author_stub.js JOB_TYPE_SCRIPT < job.json
//   job.json: {"name": ..., "created": ISO time, "settings": {...}, "metadata": {...}}
// Prints one JSON object: {"job_type": JOB_TYPE, "settings": the job's settings after compiling,
// "tasks": [{"id", "name", "type", "priority", "commands": [{"name", "parameters"}], "dependencies": [ids]}],
// "log": printed lines}. A script that throws prints {"error": message} and exits with status 3.

"use strict";

const fs = require("fs");
const nodePath = require("path");
const vm = require("vm");

const log = [];
let nextTaskId = 1;

function clean(text) {
    return `${text}`.replace(/\\/g, "/");
}

const flamencoGlobals = {
    author: {
        Task(name, type) {
            name = `${name}`.trim();
            type = `${type}`.trim();
            if (!name) {
                throw new Error("author.Task(name, type): name is required");
            }
            if (!type) {
                throw new Error("author.Task(name, type): type is required");
            }
            const task = {
                id: `task-${nextTaskId++}`,
                name: name,
                type: type,
                priority: 50,
                commands: [],
                dependencies: [],
                addCommand(command) {
                    this.commands.push(command);
                },
                addDependency(other) {
                    this.dependencies.push(other);
                },
            };
            return task;
        },
        Command(name, parameters) {
            return { name: name, parameters: parameters };
        },
    },
    path: {
        join: (...parts) => nodePath.posix.join(...parts.map(clean)),
        dirname: (p) => nodePath.posix.dirname(clean(p)),
        basename: (p) => nodePath.posix.basename(clean(p)),
        stem: (p) => nodePath.posix.parse(clean(p)).name,
    },
    formatTimestampLocal(date) {
        const two = (n) => `${n}`.padStart(2, "0");
        return (
            `${date.getFullYear()}-${two(date.getMonth() + 1)}-${two(date.getDate())}_` +
            `${two(date.getHours())}${two(date.getMinutes())}${two(date.getSeconds())}`
        );
    },
    print(...args) {
        log.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
    },
    alert(...args) {
        log.push("ALERT " + args.join(" "));
    },
};

function main() {
    const scriptPath = process.argv[2];
    const input = JSON.parse(fs.readFileSync(0, "utf8"));
    Object.assign(globalThis, flamencoGlobals);
    // Top-level const/function declarations land in the global scope, as in Flamenco's runtime.
    vm.runInThisContext(fs.readFileSync(scriptPath, "utf8"), { filename: scriptPath });
    const jobType = vm.runInThisContext("JOB_TYPE");
    const compileJob = vm.runInThisContext("compileJob");

    const tasks = [];
    const job = {
        name: input.name,
        created: new Date(input.created),
        settings: { ...input.settings },
        metadata: { ...(input.metadata || {}) },
        addTask(task) {
            tasks.push(task);
        },
    };
    try {
        compileJob(job);
    } catch (e) {
        process.stdout.write(JSON.stringify({ error: `${e}`, log: log }) + "\n");
        process.exit(3);
    }
    const plain = tasks.map((t) => ({
        id: t.id,
        name: t.name,
        type: t.type,
        priority: t.priority,
        commands: t.commands,
        dependencies: t.dependencies.map((d) => d.id),
    }));
    process.stdout.write(JSON.stringify({ job_type: jobType, settings: job.settings, tasks: plain, log: log }) + "\n");
}

main();
