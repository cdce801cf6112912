"""The study's AlexNet in PyTorch, for a same-machine (or same-card)
reference to flowerd's benchmark: classify latency at batch 1, inference
img/s at batch 16, training img/s at batch 32 (momentum SGD, lr 0.001,
momentum 0.9), fp32, every variant. TensorFlow's 'SAME' padding and LRN
(alpha not divided by the window) are reproduced, so the FLOPs are
flowerd's.

  python3 alexnet_torch.py                      # on the GPU if there is one, else every CPU core
  python3 alexnet_torch.py --flowerd bench.out  # ... and the ratio to `make bench`'s output in bench.out

On Debian 12, `apt-get install python3-torch libopenblas0-pthread` gives
PyTorch 1.13.1 with oneDNN for the convolutions and OpenBLAS for the dense
layers (without OpenBLAS, Debian's reference BLAS makes them slow)."""

import argparse
import math
import os
import re
import time

import torch
import torch.nn.functional as F
from torch import nn

VARIANTS = {  # pool strides, dense keep probabilities (DropConnect approximated by dropout here)
    "model1": ((2, 2, 2), (0.5, 0.5)),
    "model2": ((3, 3, 3), (0.5, 0.5)),
    "model3": ((3, 3, 2), (0.4, 0.3)),
    "model4": ((3, 2, 2), (0.4, 0.3)),
    "model5": ((3, 3, 2), (0.5, 0.5)),
}


def same_pad(x, k, s, value=0.0):
    """Pads NCHW x the way TensorFlow's 'SAME' does: extra on the bottom/right."""
    h, w = x.shape[2], x.shape[3]
    ph = max((math.ceil(h / s) - 1) * s + k - h, 0)
    pw = max((math.ceil(w / s) - 1) * s + k - w, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


class AlexNet(nn.Module):
    def __init__(self, strides, keep, classes=17, size=227):
        super().__init__()
        self.strides, self.keep = strides, keep
        self.convs = nn.ModuleList([
            nn.Conv2d(3, 96, 11, 4), nn.Conv2d(96, 256, 5), nn.Conv2d(256, 384, 3),
            nn.Conv2d(384, 384, 3), nn.Conv2d(384, 256, 3)])
        # TensorFlow's LRN: radius 5 (window 11), bias 1, alpha 1e-4 not divided by the window.
        self.lrn = nn.LocalResponseNorm(11, alpha=1e-4 * 11, beta=0.75, k=1.0)
        side = math.ceil(size / 4)
        for s in strides:
            side = math.ceil(side / s)
        self.fc6 = nn.Linear(side * side * 256, 4096)
        self.fc7 = nn.Linear(4096, 4096)
        self.fc8 = nn.Linear(4096, classes)

    def pool(self, x, s):
        return F.max_pool2d(same_pad(x, 3, s, -math.inf), 3, s)

    def forward(self, x):
        c = self.convs
        x = self.lrn(self.pool(F.relu(c[0](same_pad(x, 11, 4))), self.strides[0]))
        x = self.lrn(self.pool(F.relu(c[1](same_pad(x, 5, 1))), self.strides[1]))
        for conv in c[2:]:
            x = F.relu(conv(same_pad(x, 3, 1)))
        x = self.lrn(self.pool(x, self.strides[2]))
        x = torch.flatten(x, 1)
        x = F.dropout(torch.tanh(self.fc6(x)), 1 - self.keep[0], self.training)
        x = F.dropout(torch.tanh(self.fc7(x)), 1 - self.keep[1], self.training)
        return self.fc8(x)


def timed(fn, reps, device, rounds=5):
    """Seconds per call of fn: the median over rounds of reps calls each,
    after three warm-up calls (a single round moves by 10-40% at batch 1 on
    a shared 2-core machine)."""
    for _ in range(3):
        fn()
    times = []
    for _ in range(rounds):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(reps):
            fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - start) / reps)
    return sorted(times)[len(times) // 2]


def cpu_name():
    """The CPU's model name, from /proc/cpuinfo where there is one."""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "cpu"


def read_flowerd(path):
    """{(variant, figure): value} from `go test -bench Variants` output:
    classify-b1 in ms per batch, infer-b16 and train-b32 in img/s."""
    figures = {}
    for line in open(path, encoding="utf-8"):
        m = re.match(r"BenchmarkVariants/(model\d)/(classify-b1|infer-b16|train-b32)\S*\s", line)
        if not m:
            continue
        unit = "ms/batch" if m[2] == "classify-b1" else "img/s"
        value = re.search(r"([\d.]+) " + re.escape(unit), line)
        if value:
            figures[(m[1], m[2])] = float(value[1])
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="CPU threads (default: every core)")
    parser.add_argument("--flowerd", help="make bench's output, to print flowerd's figures as ratios to these")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    if device == "cpu":
        torch.set_num_threads(args.threads)
        name = f"{cpu_name()}, {torch.get_num_threads()} threads, oneDNN {torch.backends.mkldnn.is_available()}"
    else:
        name = torch.cuda.get_device_name()
    print(f"torch {torch.__version__} on {name}, fp32 (TF32 off)")
    ours = read_flowerd(args.flowerd) if args.flowerd else {}
    rows = []
    for variant, (strides, keep) in VARIANTS.items():
        net = AlexNet(strides, keep).to(device)
        opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.9)
        x1, x16, x32 = (torch.rand(n, 3, 227, 227, device=device) for n in (1, 16, 32))
        y32 = torch.randint(0, 17, (32,), device=device)
        net.eval()
        with torch.no_grad():
            b1 = timed(lambda: net(x1), 10, device)
            b16 = timed(lambda: net(x16), 2, device)
        net.train()

        def step():
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(net(x32), y32).backward()
            opt.step()

        b32 = timed(step, 2, device)
        print(f"{variant}: classify b1 {b1 * 1e3:.2f} ms, infer b16 {16 / b16:.1f} img/s, train b32 {32 / b32:.1f} img/s")
        if all((variant, f) in ours for f in ("classify-b1", "infer-b16", "train-b32")):
            rows.append((variant, b1 * 1e3 / ours[(variant, "classify-b1")],
                         ours[(variant, "infer-b16")] / (16 / b16), ours[(variant, "train-b32")] / (32 / b32)))
    if rows:
        print("\nflowerd's speed as a ratio to PyTorch's (above 1: flowerd is faster)")
        print("| variant | classify b1 | inference b16 | training b32 |")
        print("|---|---|---|---|")
        for variant, c, i, t in rows:
            print(f"| {variant} | {c:.2f} | {i:.2f} | {t:.2f} |")


if __name__ == "__main__":
    main()
