"""The trade-off figure's labels: one per model, none covering another label or marker."""
from matplotlib.transforms import Bbox
from torch import nn

from bench.tradeoff import Point, figure


def test_clustered_labels_cover_no_other_label_and_no_other_marker():
    # the shipped figure's crowded corner: two models of one size 0.05 dB apart, a published
    # point just right of them, and spread-out points around
    specs = [("searched (shipped)", "cell", 388_172, 37.46, False),
             ("searched (previous)", "cell", 388_172, 37.41, False),
             ("searched (older)", "cell", 388_172, 37.32, False),
             ("VDSR (published)", "vdsr", 668_228, 37.53, True),
             ("EDSR-baseline (published)", "edsr_baseline", 1_369_859, 37.99, True),
             ("FSRCNN (published)", "fsrcnn", 24_680, 37.00, True),
             ("cell_x2 (previous)", "cell", 138_764, 37.00, False),
             ("bicubic", "bicubic", None, 33.67, False)]
    points = [Point(label, family, params, None, set5, 33.0, nn.Identity(), published=pub)
              for label, family, params, set5, pub in specs]
    fig = figure(points, "params", "parameters", "PSNR against parameters")
    ax = fig.axes[0]
    renderer = fig.canvas.get_renderer()
    labels = {t.get_text(): t.get_window_extent(renderer) for t in ax.texts}
    assert set(labels) == {label for label, *_ in specs}
    centres = {p.label: ax.transData.transform((p.params, p.set5)) for p in points if p.params}
    for name, box in labels.items():
        if name == "bicubic":  # a line's label at the left edge, not a point's
            continue
        others = [b for other, b in labels.items() if other != name]
        assert not any(box.overlaps(b) for b in others), name
        marks = [Bbox.from_bounds(*(c - 2), 4, 4) for other, c in centres.items()
                 if other != name]
        assert not any(box.overlaps(b) for b in marks), name
