"""The training steps bench/train-vs-torch.ts times, written for JAX (`jax.grad` under `jax.jit`).

    python bench/peers/jax-step.py keyword THREADS BATCH STEPS
    python bench/peers/jax-step.py transformer DIR THREADS BATCH STEPS

The same step as bench/torch-train-step.py and bench/torch-transformer.py, layer for layer:
`keyword` is the temporal-conv keyword model (conv 40->96 k5 s2, 96->128 k3, max-pool 2, 128->160
k3, max-pool 2, 160->192 k3, dense 1152->256->12, ReLU between), cross-entropy over a random batch
and Adam (lr 1e-4, PyTorch's defaults: betas 0.9/0.999, eps 1e-8, bias-corrected); `transformer`
distils v1 toward v2 (the weights of DIR/v1.pt and v2.pt, read through PyTorch): the teacher's
forward pass without gradient, KL(teacher || student) of the class probabilities averaged over the
batch, the student's gradient and Adam (lr 1e-3). The whole step (forward, gradient, update) is
one jitted function; its first call compiles and is timed apart as `compileSeconds`, one more
warm-up call, then STEPS timed steps. Threads: THREADS below the machine's cores pins the process
to that many cores before JAX loads (sched_setaffinity): XLA's CPU backend keeps threads of its
own whatever its flags say (jax 0.10 at `--xla_cpu_multi_thread_eigen=false
intra_op_parallelism_threads=1`, which the caller still sets, ran on 1.7 of 2 cores); more threads
run it as it comes. Prints one JSON line like torch-train-step.py.
"""
import json
import os
import resource
import sys
import time

_threads = int(sys.argv[2] if sys.argv[1] == 'keyword' else sys.argv[3])
_allowed = sorted(os.sched_getaffinity(0))
if _threads < len(_allowed):
    os.sched_setaffinity(0, set(_allowed[:_threads]))

import jax  # noqa: E402 (after the pinning: XLA sizes its thread pools when it loads)
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402


def adam(lr):
    """PyTorch's torch.optim.Adam (no weight decay, no amsgrad) as a pure function."""
    b1, b2, eps = 0.9, 0.999, 1e-8

    def init(params):
        zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
        return (zeros, zeros, jnp.zeros((), jnp.float32))

    def update(params, grads, state):
        m, v, t = state
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: b1 * m + (1 - b1) * g, m, grads)
        v = jax.tree_util.tree_map(lambda v, g: b2 * v + (1 - b2) * g * g, v, grads)
        step = lr / (1 - b1 ** t)
        root = jnp.sqrt(1 - b2 ** t)
        params = jax.tree_util.tree_map(lambda p, m, v: p - step * m / (jnp.sqrt(v) / root + eps), params, m, v)
        return params, (m, v, t)

    return init, update


def conv1d(x, w, b, stride, pad):  # x [batch, width, channels], w [taps, in, out]
    y = jax.lax.conv_general_dilated(x, w, (stride,), [(pad, pad)], dimension_numbers=('NWC', 'WIO', 'NWC'))
    return y + b


def max_pool2(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 1), (1, 2, 1), 'VALID')


def keyword_setup(batch):
    rng = np.random.default_rng(0)

    def layer(shape, fan_in):
        bound = 1 / np.sqrt(fan_in)
        return jnp.asarray(rng.uniform(-bound, bound, shape).astype(np.float32))

    params = {}
    for name, taps, cin, cout in [('c1', 5, 40, 96), ('c2', 3, 96, 128), ('c3', 3, 128, 160), ('c4', 3, 160, 192)]:
        params[name] = (layer((taps, cin, cout), taps * cin), layer((cout,), taps * cin))
    params['d1'] = (layer((192 * 6, 256), 192 * 6), layer((256,), 192 * 6))
    params['d2'] = (layer((256, 12), 256), layer((12,), 256))
    x = jnp.asarray(rng.standard_normal((batch, 49, 40)).astype(np.float32))
    y = jnp.asarray(rng.integers(0, 12, batch))

    def forward(p, x):
        h = jax.nn.relu(conv1d(x, *p['c1'], 2, 2))
        h = max_pool2(jax.nn.relu(conv1d(h, *p['c2'], 1, 1)))
        h = max_pool2(jax.nn.relu(conv1d(h, *p['c3'], 1, 1)))
        h = jax.nn.relu(conv1d(h, *p['c4'], 1, 1)).reshape(x.shape[0], -1)
        h = jax.nn.relu(h @ p['d1'][0] + p['d1'][1])
        return h @ p['d2'][0] + p['d2'][1]

    def loss(p, x, y):
        logp = jax.nn.log_softmax(forward(p, x))
        return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

    init, update = adam(1e-4)

    @jax.jit
    def step(p, state, i):
        g = jax.grad(loss)(p, x, y)
        return update(p, g, state)

    return params, init(params), step


VOCAB, LENGTH, D, HEADS, FFN, LAYERS, CLASSES = 64, 32, 64, 4, 128, 2, 4


def transformer_weights(path):
    import torch  # the weights are PyTorch's state dicts (bench/torch-transformer.py make)
    state = torch.load(path)
    w = {k: jnp.asarray(v.numpy()) for k, v in state.items()}
    params = {'tokens': w['tokens.weight'], 'positions': w['positions'], 'classify': (w['classify.weight'].T, w['classify.bias']), 'layers': []}
    for i in range(LAYERS):
        pre = f'layers.{i}.'
        params['layers'].append({name: (w[pre + name + '.weight'].T if name not in ('norm1', 'norm2') else w[pre + name + '.weight'], w[pre + name + '.bias'])
                                 for name in ('qkv', 'out', 'norm1', 'up', 'down', 'norm2')})
    return params


def layer_norm(x, scale, shift):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / jnp.sqrt(var + 1e-5) * scale + shift


def classify(p, ids):
    x = p['tokens'][ids] + p['positions']
    b, n = ids.shape
    for layer in p['layers']:
        qkv = x @ layer['qkv'][0] + layer['qkv'][1]
        q, k, v = qkv.reshape(b, n, 3, HEADS, D // HEADS).transpose(2, 0, 3, 1, 4)
        att = jax.nn.softmax(q @ k.swapaxes(-1, -2) / (D // HEADS) ** 0.5, axis=-1)
        y = (att @ v).swapaxes(1, 2).reshape(b, n, D)
        x = layer_norm(x + y @ layer['out'][0] + layer['out'][1], *layer['norm1'])
        up = jax.nn.gelu(x @ layer['up'][0] + layer['up'][1], approximate=False)
        x = layer_norm(x + up @ layer['down'][0] + layer['down'][1], *layer['norm2'])
    return x.mean(axis=1) @ p['classify'][0] + p['classify'][1]


def transformer_setup(folder, batch):
    student = transformer_weights(os.path.join(folder, 'v1.pt'))
    teacher = transformer_weights(os.path.join(folder, 'v2.pt'))
    ids = jnp.asarray(np.fromfile(os.path.join(folder, 'distill-tokens.bin'), dtype='<i4').reshape(-1, LENGTH))

    def loss(p, x, target):
        logp = jax.nn.log_softmax(classify(p, x), axis=1)
        return jnp.sum(jnp.exp(target) * (target - logp)) / x.shape[0]  # KLDivLoss(batchmean, log_target)

    init, update = adam(1e-3)

    @jax.jit
    def step(p, state, i):
        start = (i * batch) % (ids.shape[0] - batch)
        x = jax.lax.dynamic_slice_in_dim(ids, start, batch)
        target = jax.lax.stop_gradient(jax.nn.log_softmax(classify(teacher, x), axis=1))
        g = jax.grad(loss)(p, x, target)
        return update(p, g, state)

    return student, init(student), step


def main():
    model = sys.argv[1]
    if model == 'keyword':
        threads, batch, steps = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
        params, state, step = keyword_setup(batch)
    else:
        folder, threads, batch, steps = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
        params, state, step = transformer_setup(folder, batch)
    w0 = time.perf_counter()
    params, state = step(params, state, 0)
    jax.block_until_ready(params)
    compile_seconds = time.perf_counter() - w0
    params, state = step(params, state, 0)
    jax.block_until_ready(params)
    t0 = time.perf_counter()
    c0 = time.process_time()
    for i in range(steps):
        params, state = step(params, state, i + 1)
    jax.block_until_ready(params)
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(json.dumps({
        'samplesPerSecond': batch * steps / seconds,
        'cpuMsPerSample': 1000 * cpu / (batch * steps),
        'peakRssBytes': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        'weights': sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(params)),
        'jax': jax.__version__,
        'threads': threads,
        'compileSeconds': compile_seconds,
    }))


main()
