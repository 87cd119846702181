"""The small transformer text classifier bench/train-vs-torch.ts distils, on PyTorch's side.

    python3 bench/torch-transformer.py make DIR [quick] # v1.onnx, v2.onnx, distill-tokens.bin into DIR (once)
    python3 bench/torch-transformer.py distill DIR THREADS BATCH STEPS [compile]
    python3 bench/torch-transformer.py profile DIR THREADS BATCH STEPS   # ms per step by operator

The model: token embedding (64 tokens) + learned positions (32), 2 post-norm encoder layers
(d=64, 4 heads, FFN 128 with GELU), mean pool over the positions, a linear classifier over 4
classes: 73,348 weights. Attention is written out (Linear projections, MatMul, Softmax), so the
ONNX export holds the operators a PyTorch transformer exports to at opset 13: MatMul over
[batch, heads, 32, 16] operands, Softmax, LayerNorm decomposed (ReduceMean, Sub, Pow, Sqrt, Div),
GELU as Erf, and the embedding as Gather.

The task (synthetic, generated from a seed, with real structure): 32 tokens drawn uniformly from
64; token t belongs to group t % 4. v1's class is the group with the most tokens (lowest group on a
tie): a count the model must read over every position. v2 changes the rule: tokens in the first
half of the sequence count alone (the group with the most tokens among the first 16), so the class
depends on where the tokens are too. `make`
trains v1 on 8,192 sequences (v1's rule, 6 epochs), fine-tunes a copy into v2 on v2's rule
(6 epochs), prints both models' accuracy on 2,048 held-out sequences under both rules, and exports
both to ONNX; it writes the distillation inputs (4,096 sequences from another seed, int32
little-endian [4096, 32]) beside them. Everything is seeded: the same files every run. `make DIR
quick` trains the same model on 2,048 sequences for one epoch each, for the quick run's few timed
steps (bench/train-vs-torch.ts --quick, into its own folder).

`distill` times what bench/train-vs-torch.ts times on our side: v1 distilled toward v2 on the
distillation inputs, each step the teacher's forward pass (no gradient), KL(teacher || student)
of the class probabilities (temperature 1), the student's backward pass and an Adam update of every
weight; one warm-up step, then STEPS timed steps. Prints one JSON line like torch-train-step.py.
`compile` (PyTorch 2) runs the student and the teacher through `torch.compile` and Adam's step
through a compiled function, as torch-train-step.py does: two warm-up steps, timed apart as
`compileSeconds`.
"""
import json
import os
import resource
import sys
import time

import torch
from torch import nn

VOCAB, LENGTH, D, HEADS, FFN, LAYERS, CLASSES = 64, 32, 64, 4, 128, 2, 4


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(D, 3 * D)
        self.out = nn.Linear(D, D)
        self.norm1 = nn.LayerNorm(D)
        self.up = nn.Linear(D, FFN)
        self.act = nn.GELU()
        self.down = nn.Linear(FFN, D)
        self.norm2 = nn.LayerNorm(D)

    def forward(self, x):
        b, n, _ = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, HEADS, D // HEADS).permute(2, 0, 3, 1, 4)
        att = torch.softmax(q @ k.transpose(-1, -2) / (D // HEADS) ** 0.5, dim=-1)
        y = (att @ v).transpose(1, 2).reshape(b, n, D)
        x = self.norm1(x + self.out(y))
        return self.norm2(x + self.down(self.act(self.up(x))))


class TextClassifier(nn.Module):
    def __init__(self):
        super().__init__()
        self.tokens = nn.Embedding(VOCAB, D)
        self.positions = nn.Parameter(torch.randn(LENGTH, D) * 0.02)
        self.layers = nn.Sequential(*[Encoder() for _ in range(LAYERS)])
        self.classify = nn.Linear(D, CLASSES)

    def forward(self, ids):
        return self.classify(self.layers(self.tokens(ids) + self.positions).mean(dim=1))


def sequences(count, seed):
    return torch.randint(0, VOCAB, (count, LENGTH), generator=torch.Generator().manual_seed(seed))


def labels(ids, rule):
    weight = torch.ones(LENGTH, dtype=torch.long)
    if rule == 2:
        weight[LENGTH // 2:] = 0
    counts = torch.zeros(ids.shape[0], CLASSES, dtype=torch.long)
    counts.scatter_add_(1, ids % CLASSES, weight.expand_as(ids).contiguous())
    # argmax returns the first maximum: the lowest group on a tie
    return counts.argmax(dim=1)


def fit(model, ids, y, epochs, lr, seed):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(epochs):
        order = torch.randperm(ids.shape[0], generator=g)
        for i in range(0, ids.shape[0], 64):
            pick = order[i:i + 64]
            opt.zero_grad()
            nn.functional.cross_entropy(model(ids[pick]), y[pick]).backward()
            opt.step()
    model.eval()


def accuracy(model, ids, y):
    with torch.no_grad():
        return (model(ids).argmax(dim=1) == y).float().mean().item()


def export(model, path):
    torch.onnx.export(model, (sequences(2, 0),), path, input_names=['tokens'], output_names=['logits'],
                      dynamic_axes={'tokens': {0: 'batch'}, 'logits': {0: 'batch'}}, opset_version=13)


def make(folder, quick=False):
    # quick: the same model trained on a quarter of the sequences for one epoch each, enough for a
    # quick run's few timed steps (it proves the mechanism; its figures are not the benchmark's)
    os.makedirs(folder, exist_ok=True)
    torch.manual_seed(1)
    train, held = sequences(2048 if quick else 8192, 11), sequences(2048, 12)
    epochs = 1 if quick else 6
    v1 = TextClassifier()
    fit(v1, train, labels(train, 1), epochs, 2e-3, 21)
    v2 = TextClassifier()
    v2.load_state_dict(v1.state_dict())
    fit(v2, train, labels(train, 2), epochs, 2e-3, 22)
    for name, m in (('v1', v1), ('v2', v2)):
        print(f'{name}: held-out accuracy {accuracy(m, held, labels(held, 1)):.3f} on v1\'s rule, {accuracy(m, held, labels(held, 2)):.3f} on v2\'s rule', file=sys.stderr)
        export(m, os.path.join(folder, f'{name}.onnx'))
        torch.save(m.state_dict(), os.path.join(folder, f'{name}.pt'))
    sequences(4096, 13).to(torch.int32).numpy().astype('<i4').tofile(os.path.join(folder, 'distill-tokens.bin'))
    print(json.dumps({'weights': sum(p.numel() for p in v1.parameters())}))


def distill(folder, threads, batch, steps, profile=False, compiled=False):
    torch.set_num_threads(threads)
    student, teacher = TextClassifier(), TextClassifier()
    student.load_state_dict(torch.load(os.path.join(folder, 'v1.pt')))
    teacher.load_state_dict(torch.load(os.path.join(folder, 'v2.pt')))
    student.eval()
    teacher.eval()
    ids = torch.from_numpy(__import__('numpy').fromfile(os.path.join(folder, 'distill-tokens.bin'), dtype='<i4').reshape(-1, LENGTH)).long()
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    kl = nn.KLDivLoss(reduction='batchmean', log_target=True)
    student_forward = torch.compile(student) if compiled else student
    teacher_forward = torch.compile(teacher) if compiled else teacher
    update = torch.compile(opt.step) if compiled else opt.step

    def step(i):
        x = ids[(i * batch) % (ids.shape[0] - batch):][:batch]
        with torch.no_grad():
            target = torch.log_softmax(teacher_forward(x), dim=1)
        opt.zero_grad()
        kl(torch.log_softmax(student_forward(x), dim=1), target).backward()
        update()

    w0 = time.perf_counter()
    step(0)
    if compiled:
        step(0)  # the optimizer's state exists from the first step on: its compiled step settles here
    warmup_seconds = time.perf_counter() - w0
    if profile:
        def teacher_pass(i):
            with torch.no_grad():
                torch.log_softmax(teacher(ids[(i * batch) % (ids.shape[0] - batch):][:batch]), dim=1)
        profile_steps(step, teacher_pass, batch, steps)
        return
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(steps):
        step(i + 1)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    t1 = time.perf_counter()
    for _ in range(4):
        torch.mm(a, b)
    gflops = 4 * 2 * 1024 ** 3 / (time.perf_counter() - t1) / 1e9
    print(json.dumps({
        'samplesPerSecond': batch * steps / seconds,
        'cpuMsPerSample': 1000 * cpu / (batch * steps),
        'peakRssBytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        'weights': sum(p.numel() for p in student.parameters()),
        'sgemmGflops': gflops,
        'torch': torch.__version__,
        'compileSeconds': warmup_seconds if compiled else None,
    }))


def profile_steps(step, teacher_pass, batch, steps):
    """Where PyTorch's distillation step goes, operator by operator (torch.profiler, CPU): the
    self CPU time of each aten operator in ms per step and its calls per step, beside what
    bench/profile-plan.ts prints for ours; then the CPU time of the same steps unprofiled, and of
    the teacher's pass in them alone (ours computes it apart: bench/train-transformer-child.ts)."""
    from torch.profiler import ProfilerActivity, profile as torch_profile
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(i + 1)
    rows = [(e.key, e.self_cpu_time_total / 1000 / steps, e.count / steps) for e in prof.key_averages()]
    rows = [r for r in rows if r[1] > 0]
    total = sum(r[1] for r in rows)
    c0 = time.process_time()
    for i in range(steps):
        step(i + 1)
    cpu = (time.process_time() - c0) * 1000 / steps
    c0 = time.process_time()
    for i in range(steps):
        teacher_pass(i + 1)
    teacher_cpu = (time.process_time() - c0) * 1000 / steps
    print(f'PyTorch {torch.__version__}, batch {batch}, {torch.get_num_threads()} thread(s): {cpu:.2f} CPU ms per step unprofiled, the teacher\'s pass {teacher_cpu:.2f} of them; operators (self CPU) {total:.2f} ms per step profiled')
    print('| operator | calls per step | ms per step | share |')
    print('|---|---:|---:|---:|')
    for name, ms, calls in sorted(rows, key=lambda r: -r[1]):
        if ms >= 0.005:
            print(f'| {name} | {calls:.0f} | {ms:.3f} | {100 * ms / total:.1f}% |')


if sys.argv[1] == 'make':
    make(sys.argv[2], quick=sys.argv[3:4] == ['quick'])
else:
    distill(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), profile=sys.argv[1] == 'profile', compiled=sys.argv[6:7] == ['compile'])
