"""A real JPEG photo upscaled three ways, side by side: bicubic, the model for clean images
and the model for real photos (docs/RESULTS.md, "Real photos").

The photo is scikit-image's `rocket.jpg` (a launch photographed by NASA, saved as a JPEG,
427x640): its blocks and noise are what a phone or a web page hands the toolkit. Run from
the repository root: python docs/figures/real_photo/side_by_side.py
"""

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import skimage
from PIL import Image

import nas_sr

OUT = Path(__file__).parent
PHOTO = Path(skimage.data.__file__).parent / "rocket.jpg"
CROPS = {2: (110, 250, 128), 4: (125, 290, 64)}  # scale: (top, left, side) of the LR crop


def panel(scale: int) -> Path:
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    top, left, side = CROPS[scale]
    lr = photo[top:top + side, left:left + side]
    shown = {
        "bicubic": np.asarray(Image.fromarray(lr).resize((side * scale,) * 2, Image.BICUBIC)),
        f"searched_x{scale} (clean images)": nas_sr.upscale_image(f"searched_x{scale}", lr),
        f"real_x{scale} (real photos)": nas_sr.upscale_image(f"real_x{scale}", lr),
    }
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    for ax, (name, img) in zip(axes, shown.items(), strict=True):
        ax.imshow(img, interpolation="nearest")
        ax.set_title(name, fontsize=11)
        ax.axis("off")
    fig.suptitle(f"x{scale}: a {side}x{side} crop of rocket.jpg (a JPEG photo), upscaled",
                 fontsize=12)
    fig.tight_layout()
    path = OUT / f"rocket_x{scale}.png"
    fig.savefig(path, dpi=110)
    return path


if __name__ == "__main__":
    for s in CROPS:
        print(panel(s))
