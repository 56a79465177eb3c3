"""What each selection rule should gain over a random pick, from the spreads measured on the
ceiling's 10 band cells (docs/RESULTS.md, "How much is left for a controller?").
Run from the repository root: python docs/figures/ceiling/headroom.py"""
import json

from nas_sr.search.stats import pearson_from_tau, reliability, selection_gain

rank = json.load(open("docs/figures/proxy/rank_c32n4_s400.json"))  # 10 band cells
b, w = rank["variance"]["between_std"], rank["variance"]["within_std"]  # the judge's split
judge = reliability(rank["variance"], runs=2)       # of the 2-seed retrained mean
shared = pearson_from_tau(rank["kendall_tau"]) / judge**0.5   # disattenuated: 0.47
proxy = reliability(rank["proxy"]["variance"]) ** 0.5       # one proxy run: 0.76
rules = {"random pick": (1, 0, 0), "shared final (top 1)": (1, shared, 0),
         "proxy final (top 8)": (8, shared, proxy), "proxy reward on all 480": (480, 0, proxy)}
for name, (top, r1, r2) in rules.items():
    g = selection_gain(b, 480, top, r1, r2)
    print(f"{name:24s} gain {g['gain']:+.3f}  spread {(g['gain_std']**2 + w**2) ** 0.5:.3f}"
          f"  oracle {g['oracle']:+.3f}")
