"""Per-frame values of animated properties, read from F-curves (Blender 4.2 … 5.x).

Reading the F-curve directly avoids stepping the whole scene through every frame just to read λ and μ.
Where the F-curves live differs between Blender versions (slotted actions): compat.action_fcurves.
"""

from . import compat


def _single(value):
    """float32 property values printed as float64 look like 0.009999999776; keep 7 significant digits."""
    return float(f"{value:.7g}")


def find_fcurve(id_data, data_path, index=0):
    """The F-curve animating data_path on id_data, or None."""
    fcurves = compat.action_fcurves(id_data)
    if fcurves is None:
        return None
    return fcurves.find(data_path, index=index)


def per_frame_values(id_data, data_path, static_value, frame_start, count, lo=-float("inf"), hi=float("inf")):
    """Value of data_path at frame_start … frame_start+count-1; collapses to a float when constant.

    Values are clamped to [lo, hi] like Blender clamps the property itself (a Bézier F-curve can
    overshoot its keys, e.g. below λ = 0).
    """
    fcurve = find_fcurve(id_data, data_path)
    if count < 1 or fcurve is None or fcurve.mute or not len(fcurve.keyframe_points):
        return _single(static_value)
    values = [_single(min(hi, max(lo, fcurve.evaluate(frame_start + i)))) for i in range(count)]
    if all(v == values[0] for v in values):
        return values[0]
    return values
