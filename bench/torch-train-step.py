"""Training throughput of PyTorch on the models bench/train-vs-torch.ts measures ours on.

    python3 bench/torch-train-step.py MODEL THREADS BATCH STEPS [compile]

MODEL is `keyword` (the temporal-conv keyword model of examples/keyword-spotting/model.ts, the same
layers and sizes) or `mobilenetv2` (MobileNetV2 1.0 at 224x224 with nsfwjs's head: 7x7 average pool,
dense 256, 128 and 5). One step = forward, cross-entropy, backward and an Adam update of every
weight, on random inputs (throughput does not depend on the values), with the layers in inference
mode as ours trains them (batch-norm on its moving statistics, dropout off). One warm-up step, then
STEPS timed steps. Prints one JSON line: samples/s, the process's peak resident memory, the weight
count, and an SGEMM rate that shows which BLAS is loaded.

`compile` (PyTorch 2, bench/peers/install.sh's virtualenv) runs the model through `torch.compile`
and the optimizer's step through a compiled function (PyTorch's recipe for compiling Adam): the
first two steps compile (forward, backward, update) and are timed apart as `compileSeconds`; the
STEPS timed steps come after them.
"""
import json
import resource
import sys
import time

import torch
from torch import nn

model_name, threads, batch, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
compiled = sys.argv[5:6] == ['compile']
torch.set_num_threads(threads)
torch.manual_seed(0)


class Keyword(nn.Module):
    def __init__(self, classes=12):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(40, 96, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(96, 128, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(128, 160, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2),
            nn.Conv1d(160, 192, 3, padding=1), nn.ReLU(), nn.Flatten(),
            nn.Linear(192 * 6, 256), nn.ReLU(), nn.Linear(256, classes))

    def forward(self, x):  # x: [batch, 49 frames, 40 mel bands], as the tfjs model reads it
        return self.body(x.transpose(1, 2))


def conv_bn(cin, cout, k, stride, groups=1, relu=True):
    layers = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu:
        layers.append(nn.ReLU6())
    return layers


class Inverted(nn.Module):
    def __init__(self, cin, cout, stride, expand):
        super().__init__()
        mid = cin * expand
        layers = [] if expand == 1 else conv_bn(cin, mid, 1, 1)
        layers += conv_bn(mid, mid, 3, stride, groups=mid) + conv_bn(mid, cout, 1, 1, relu=False)
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.block(x) if self.residual else self.block(x)


def mobilenetv2(classes=5):
    layers = conv_bn(3, 32, 3, 2)
    cin = 32
    for expand, cout, repeats, stride in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]:
        for i in range(repeats):
            layers.append(Inverted(cin, cout, stride if i == 0 else 1, expand))
            cin = cout
    layers += conv_bn(cin, 1280, 1, 1)
    layers += [nn.AvgPool2d(7), nn.Flatten(), nn.Linear(1280, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, classes)]
    return nn.Sequential(*layers)


if model_name == 'keyword':
    model, shape, classes = Keyword(), (batch, 49, 40), 12
else:
    model, shape, classes = mobilenetv2(), (batch, 3, 224, 224), 5
model.eval()
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
x = torch.randn(*shape)
y = torch.randint(0, classes, (batch,))
loss_fn = nn.CrossEntropyLoss()
forward = torch.compile(model) if compiled else model
update = torch.compile(opt.step) if compiled else opt.step


def step():
    opt.zero_grad()
    loss = loss_fn(forward(x), y)
    loss.backward()
    update()


w0 = time.perf_counter()
step()
if compiled:
    step()  # the optimizer's state exists from the first step on: its compiled step settles here
warmup_seconds = time.perf_counter() - w0
t0 = time.perf_counter()
c0 = time.process_time()
for _ in range(steps):
    step()
seconds = time.perf_counter() - t0
cpu = time.process_time() - c0  # every thread of the process

a = torch.randn(1024, 1024)
b = torch.randn(1024, 1024)
torch.mm(a, b)
t1 = time.perf_counter()
for _ in range(4):
    torch.mm(a, b)
gflops = 4 * 2 * 1024 ** 3 / (time.perf_counter() - t1) / 1e9

print(json.dumps({
    'samplesPerSecond': batch * steps / seconds,
    'cpuMsPerSample': 1000 * cpu / (batch * steps),
    'peakRssBytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    'weights': sum(p.numel() for p in model.parameters()),
    'sgemmGflops': gflops,
    'torch': torch.__version__,
    'compileSeconds': warmup_seconds if compiled else None,
}))
