#!/usr/bin/env python3
"""Compares two `ee tune` output folders (--loss-csv losses.csv and heads.safetensors) like ee-cli's
DistributedTuneTest.assertLike: the largest relative difference of a per-step loss, and of a head tensor
(max |a-b| / max |a|). usage: compare_runs.py REF RUN TOLERANCE  -> prints both, exit 1 if either exceeds TOLERANCE.
Standard library only (it runs in native/cuda/device-check.sh)."""
import csv
import json
import struct
import sys


def losses(run):
    with open(f"{run}/losses.csv") as f:
        return {int(r["step"]): [float(v) for k, v in r.items() if k.startswith("loss_exit_")] for r in csv.DictReader(f)}


def heads(run):
    with open(f"{run}/heads.safetensors", "rb") as f:
        data = f.read()
    n = struct.unpack_from("<Q", data)[0]
    header = json.loads(data[8:8 + n])
    out = {}
    for name, t in header.items():
        if name == "__metadata__" or t["dtype"] != "F32":
            continue
        a, b = t["data_offsets"]
        out[name] = struct.unpack_from(f"<{(b - a) // 4}f", data, 8 + n + a)
    return out


def main(ref, run, tolerance):
    la, lb = losses(ref), losses(run)
    if set(la) != set(lb):
        sys.exit(f"steps differ: {sorted(la)} vs {sorted(lb)}")
    worst_loss = max(abs(x - y) / abs(x) for s in la for x, y in zip(la[s], lb[s]))
    ha, hb = heads(ref), heads(run)
    if set(ha) != set(hb):
        sys.exit(f"head tensors differ: {sorted(ha)} vs {sorted(hb)}")
    worst_head = max(max(abs(x - y) for x, y in zip(ha[k], hb[k])) / max(abs(x) for x in ha[k]) for k in ha)
    ok = worst_loss <= tolerance and worst_head <= tolerance
    print(f"{'PASS' if ok else 'FAIL'} {run} vs {ref}: largest relative difference of a step loss {worst_loss:.3g}, "
          f"of a head tensor {worst_head:.3g} (tolerance {tolerance:g})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
