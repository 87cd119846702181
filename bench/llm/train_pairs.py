"""Train the real language-model versions the GGUF benchmark diffs, on Debian's own text.

A small LLaMA-architecture model (transformers' LlamaForCausalLM, about 5M weights, context 128)
with its own sentencepiece tokenizer, trained on CPU from python3.11-doc's reST sources (v1),
fine-tuned on fortunes (v2, from v1) and then on the King James Bible (v3, from v2), and a rank-8
LoRA of v1 on fortunes merged into its weights (lora): the releases a team ships. Each is saved as a
Hugging Face folder (config.json, model.safetensors, tokenizer.model) that llama.cpp's
convert_hf_to_gguf.py reads; the LoRA also unmerged, as the PEFT folder hf/lora-adapter
(adapter_config.json, adapter_model.safetensors) that convert_lora_to_gguf.py reads, written
without the peft library. A merged file holds only W + BA, so when the adapter is missing the LoRA
step runs again (seeded, about 6 s): the saved merged weights are kept when the rerun makes them
bit for bit, replaced (and their GGUFs removed for remaking) when not. Held-out text of each domain (never trained on) is written for
measuring. Seeded; each step is skipped when its output exists, so a rerun only makes what is
missing.

    python bench/llm/train_pairs.py --out DIR [--steps-v1 N] [--steps-ft N] [--threads N]

Run by bench/llm/make-pairs.sh, which makes the virtualenv this needs.
"""
import argparse
import json
import math
import os
import random
import shutil
import sys
import time

PY_DOC = '/usr/share/doc/python3.11/html/_sources'
FORTUNES = '/usr/share/games/fortunes'

SEQ = 128
BATCH = 4
HELD_OUT_CHARS = 24_000


def parse_args(argv):
    p = argparse.ArgumentParser(description='Train v1, v2, v3 and a merged LoRA of a small LLaMA model on Debian text.')
    p.add_argument('--out', required=True, help='output folder (the pairs cache)')
    p.add_argument('--steps-v1', type=int, default=80, help="training steps of v1 (batch 4 x 128 tokens)")
    p.add_argument('--steps-ft', type=int, default=20, help="steps of each fine-tune (v2, v3, lora)")
    p.add_argument('--threads', type=int, default=2, help='torch CPU threads')
    p.add_argument('--vocab', type=int, default=2048, help='sentencepiece vocabulary size')
    p.add_argument('--seed', type=int, default=1)
    a = p.parse_args(argv)
    for name in ('steps_v1', 'steps_ft', 'threads', 'vocab'):
        if getattr(a, name) < 1:
            p.error(f'--{name.replace("_", "-")} must be a positive integer, got {getattr(a, name)}')
    if a.vocab < 260:
        p.error(f'--vocab must be at least 260 (sentencepiece needs room beyond its byte pieces), got {a.vocab}')
    return a


def read_tree(root, suffixes):
    """Every file under root whose name ends with one of suffixes, in sorted path order, concatenated."""
    if not os.path.isdir(root):
        sys.exit(f'{root} is missing: install the Debian package that holds it (apt-get install python3.11-doc fortunes bible-kjv)')
    parts = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for f in sorted(filenames):
            if any(f.endswith(s) for s in suffixes):
                with open(os.path.join(dirpath, f), 'rb') as fh:
                    parts.append(fh.read().decode('utf-8', 'replace'))
    return '\n'.join(parts)


def fortunes_text():
    # The fortune files are the ones without a suffix (the .dat/.u8 beside them are indexes/links).
    if not os.path.isdir(FORTUNES):
        sys.exit(f'{FORTUNES} is missing: apt-get install fortunes')
    parts = []
    for f in sorted(os.listdir(FORTUNES)):
        full = os.path.join(FORTUNES, f)
        if '.' in f or not os.path.isfile(full) or os.path.islink(full):
            continue
        with open(full, 'rb') as fh:
            parts.append(fh.read().decode('utf-8', 'replace').replace('\n%\n', '\n\n'))
    return '\n'.join(parts)


def bible_text():
    """The King James Bible, printed whole by bible-kjv's `bible` program from bible-kjv-text's data."""
    import subprocess
    if not shutil.which('bible'):
        sys.exit('the bible program is missing: apt-get install bible-kjv bible-kjv-text')
    return subprocess.run(['bible', 'Gen1:1-Rev22:21'], stdin=subprocess.DEVNULL, capture_output=True, check=True).stdout.decode('utf-8', 'replace')


def split_held_out(text):
    """The last HELD_OUT_CHARS characters (cut at a line) are held out; the rest is for training."""
    cut = text.rfind('\n', 0, len(text) - HELD_OUT_CHARS)
    return text[:cut], text[cut + 1:]


def domains(out):
    """Training text of each domain; writes held-out/<domain>.txt once."""
    texts = {'python-doc': read_tree(PY_DOC, ('.rst.txt', '.txt')), 'fortunes': fortunes_text(), 'bible': bible_text()}
    held = os.path.join(out, 'held-out')
    os.makedirs(held, exist_ok=True)
    train = {}
    for name, text in texts.items():
        train[name], held_out = split_held_out(text)
        path = os.path.join(held, f'{name}.txt')
        if not os.path.exists(path):
            with open(path, 'w', encoding='utf-8') as fh:
                fh.write(held_out)
            print(f'held-out text: {path} ({len(held_out)} characters, the end of {name}; {len(train[name])} characters left for training)')
    return train


def tokenizer(out, corpus, vocab, seed):
    import sentencepiece as spm
    model = os.path.join(out, 'tokenizer.model')
    if os.path.exists(model):
        return spm.SentencePieceProcessor(model_file=model)
    src = os.path.join(out, 'tokenizer-corpus.txt')
    with open(src, 'w', encoding='utf-8') as fh:
        fh.write(corpus)
    if hasattr(spm, 'set_random_generator_seed'):
        spm.set_random_generator_seed(seed)
    t0 = time.time()
    spm.SentencePieceTrainer.train(
        input=src, model_prefix=os.path.join(out, 'tokenizer'), vocab_size=vocab, model_type='bpe',
        character_coverage=1.0, byte_fallback=True, input_sentence_size=200_000, shuffle_input_sentence=True,
        seed_sentencepiece_size=200_000, num_threads=1,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, minloglevel=2)
    os.remove(src)
    print(f'tokenizer: {model} ({vocab} pieces, BPE with byte fallback, trained on python3.11-doc in {time.time() - t0:.0f} s)')
    return spm.SentencePieceProcessor(model_file=model)


def model_config(vocab):
    from transformers import LlamaConfig
    return LlamaConfig(
        vocab_size=vocab, hidden_size=256, intermediate_size=768, num_hidden_layers=5, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=SEQ * 2, rms_norm_eps=1e-5, rope_theta=10000.0,
        tie_word_embeddings=False, bos_token_id=1, eos_token_id=2, torch_dtype='float32')


def batches(ids, steps, seed):
    import torch
    g = torch.Generator().manual_seed(seed)
    n = len(ids) - SEQ - 1
    for _ in range(steps):
        starts = torch.randint(0, n, (BATCH,), generator=g)
        yield torch.stack([ids[s:s + SEQ + 1] for s in starts.tolist()])


def train(model, params, ids, steps, lr, seed, label):
    import torch
    opt = torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
    warm = max(1, steps // 10)
    model.train()
    t0 = time.time()
    for step, batch in enumerate(batches(ids, steps, seed)):
        for group in opt.param_groups:
            group['lr'] = lr * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        loss = lm_loss(model, batch)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if step == 0 or (step + 1) % 25 == 0 or step + 1 == steps:
            print(f'  {label} step {step + 1}/{steps}: loss {loss.item():.3f} ({time.time() - t0:.0f} s)', flush=True)


def lm_loss(model, batch):
    import torch.nn.functional as F
    logits = model(input_ids=batch[:, :-1]).logits
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), batch[:, 1:].reshape(-1))


def save(model, out, name, tok_model, note):
    folder = os.path.join(out, 'hf', name)
    tmp = folder + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp, safe_serialization=True)
    shutil.copy(tok_model, os.path.join(tmp, 'tokenizer.model'))
    with open(os.path.join(tmp, 'tokenizer_config.json'), 'w') as fh:
        json.dump({'tokenizer_class': 'LlamaTokenizer', 'add_bos_token': True, 'add_eos_token': False,
                   'bos_token': '<s>', 'eos_token': '</s>', 'unk_token': '<unk>', 'model_max_length': SEQ * 2}, fh)
    with open(os.path.join(tmp, 'TRAINING.txt'), 'w') as fh:
        fh.write(note + '\n')
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    n = sum(p.numel() for p in model.parameters())
    print(f'{name}: {folder} ({n} weights) - {note}')


def load(out, name):
    from transformers import LlamaForCausalLM
    return LlamaForCausalLM.from_pretrained(os.path.join(out, 'hf', name), torch_dtype='float32')


LORA_RANK = 8
LORA_ALPHA = 16
LORA_TARGETS = ('q_proj', 'k_proj', 'v_proj', 'o_proj', 'gate_proj', 'up_proj', 'down_proj')


class LoraLinear:
    """A rank-r adapter beside a frozen nn.Linear: y = W x + (alpha / r) B A x, merged into W at the end."""

    def __init__(self, linear, r, alpha, g):
        import torch
        self.linear = linear
        self.scale = alpha / r
        self.a = torch.nn.Parameter(torch.randn(r, linear.in_features, generator=g) / math.sqrt(linear.in_features))
        self.b = torch.nn.Parameter(torch.zeros(linear.out_features, r))
        base = linear.forward
        linear.forward = lambda x: base(x) + (x @ self.a.t() @ self.b.t()) * self.scale

    def merge(self):
        import torch
        with torch.no_grad():
            self.linear.weight += (self.b @ self.a) * self.scale
        del self.linear.forward


def lora_targets(model):
    """(module path, nn.Linear) of every adapted projection, in layer order then LORA_TARGETS order."""
    found = []
    for i, layer in enumerate(model.model.layers):
        for name in LORA_TARGETS:
            part = 'self_attn' if name.endswith(('q_proj', 'k_proj', 'v_proj', 'o_proj')) else 'mlp'
            found.append((f'model.layers.{i}.{part}.{name}', getattr(getattr(layer, part), name)))
    return found


def peft_adapter_tensors(adapters):
    """The adapter's tensors under PEFT's names: base_model.model.<module>.lora_A.weight (r x in) and
    .lora_B.weight (out x r), so that PEFT's forward B(A(x)) * alpha / r is this LoraLinear's."""
    tensors = {}
    for module, ad in adapters:
        tensors[f'base_model.model.{module}.lora_A.weight'] = ad.a.detach().contiguous().clone()
        tensors[f'base_model.model.{module}.lora_B.weight'] = ad.b.detach().contiguous().clone()
    return tensors


def save_adapter(adapters, out, base, note):
    """The unmerged adapter as a Hugging Face PEFT folder (adapter_config.json, adapter_model.safetensors)
    that llama.cpp's convert_lora_to_gguf.py reads, written without the peft library."""
    from safetensors.torch import save_file
    folder = os.path.join(out, 'hf', 'lora-adapter')
    tmp = folder + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    config = {
        'peft_type': 'LORA', 'task_type': 'CAUSAL_LM', 'base_model_name_or_path': os.path.abspath(os.path.join(out, 'hf', base)),
        'r': LORA_RANK, 'lora_alpha': LORA_ALPHA, 'lora_dropout': 0.0, 'bias': 'none', 'fan_in_fan_out': False,
        'target_modules': list(LORA_TARGETS), 'inference_mode': True}
    with open(os.path.join(tmp, 'adapter_config.json'), 'w') as fh:
        json.dump(config, fh, indent=2)
    save_file(peft_adapter_tensors(adapters), os.path.join(tmp, 'adapter_model.safetensors'), metadata={'format': 'pt'})
    with open(os.path.join(tmp, 'TRAINING.txt'), 'w') as fh:
        fh.write(note + '\n')
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(tmp, folder)
    n = sum(ad.a.numel() + ad.b.numel() for _, ad in adapters)
    print(f'lora-adapter: {folder} ({n} weights, {len(adapters)} projections) - {note}')


def stale_gguf(out, prefix):
    """Remove the GGUFs made from a folder about to be rewritten (gguf/<prefix>*.gguf), so make-pairs.sh makes them again."""
    folder = os.path.join(out, 'gguf')
    for f in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if f.startswith(prefix) and f.endswith('.gguf'):
            os.remove(os.path.join(folder, f))


def same_weights(model, folder):
    """Whether the model's state equals the safetensors in folder bit for bit."""
    import torch
    from safetensors.torch import load_file
    saved = load_file(os.path.join(folder, 'model.safetensors'))
    state = model.state_dict()
    return all(name in state and torch.equal(state[name], t) for name, t in saved.items())


def main(argv):
    a = parse_args(argv)
    import torch
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    os.makedirs(os.path.join(a.out, 'hf'), exist_ok=True)
    text = domains(a.out)
    tok_path = os.path.join(a.out, 'tokenizer.model')
    sp = tokenizer(a.out, text['python-doc'], a.vocab, a.seed)
    ids = {}

    def tokens(domain):
        if domain not in ids:
            ids[domain] = torch.tensor(sp.encode(text[domain]), dtype=torch.long)
            print(f'{domain}: {len(ids[domain])} training tokens')
        return ids[domain]

    done = lambda name: os.path.exists(os.path.join(a.out, 'hf', name, 'config.json'))
    if not done('v1'):
        from transformers import LlamaForCausalLM
        torch.manual_seed(a.seed)
        model = LlamaForCausalLM(model_config(a.vocab))
        train(model, list(model.parameters()), tokens('python-doc'), a.steps_v1, 3e-3, a.seed, 'v1')
        save(model, a.out, 'v1', tok_path, f'v1: trained from scratch on python3.11-doc, {a.steps_v1} steps of {BATCH}x{SEQ} tokens, AdamW lr 3e-3, seed {a.seed}')
    for name, parent, domain, seed in (('v2', 'v1', 'fortunes', a.seed + 1), ('v3', 'v2', 'bible', a.seed + 2)):
        if not done(name):
            model = load(a.out, parent)
            train(model, list(model.parameters()), tokens(domain), a.steps_ft, 1e-3, seed, name)
            save(model, a.out, name, tok_path, f'{name}: {parent} fine-tuned on {domain}, {a.steps_ft} steps, every weight, AdamW lr 1e-3, seed {seed}')
    # The LoRA step runs again when its unmerged adapter is missing (a merged file holds W + BA only);
    # seeded, it remakes the same merged weights, which replace the saved ones only if they differ.
    if not done('lora') or not os.path.exists(os.path.join(a.out, 'hf', 'lora-adapter', 'adapter_config.json')):
        model = load(a.out, 'v1')
        for p in model.parameters():
            p.requires_grad_(False)
        g = torch.Generator().manual_seed(a.seed + 3)
        adapters = [(module, LoraLinear(lin, LORA_RANK, LORA_ALPHA, g)) for module, lin in lora_targets(model)]
        params = [p for _, ad in adapters for p in (ad.a, ad.b)]
        train(model, params, tokens('fortunes'), a.steps_ft, 2e-3, a.seed + 3, 'lora')
        how = f'trained on fortunes, {a.steps_ft} steps, AdamW lr 2e-3, seed {a.seed + 3}'
        targets = ', '.join(t.split('_')[0] for t in LORA_TARGETS)
        stale_gguf(a.out, 'lora-adapter-')
        save_adapter(adapters, a.out, 'v1', f'lora-adapter: a rank-{LORA_RANK} LoRA of v1 (alpha {LORA_ALPHA}; {targets} of every layer) {how}, unmerged (PEFT layout)')
        for _, ad in adapters:
            ad.merge()
        if done('lora') and same_weights(model, os.path.join(a.out, 'hf', 'lora')):
            print('lora: the rerun merged the same weights as the saved hf/lora, kept')
        else:
            if done('lora'):
                print('lora: the rerun merged weights other than the saved hf/lora (another torch or thread count?); replacing it, its GGUFs are remade')
                stale_gguf(a.out, 'lora-')
            save(model, a.out, 'lora', tok_path, f'lora: v1 with a rank-{LORA_RANK} LoRA (alpha {LORA_ALPHA}; {targets} of every layer) {how}, merged into the weights')

if __name__ == '__main__':
    main(sys.argv[1:])
