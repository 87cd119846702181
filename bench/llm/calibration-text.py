"""Calibration text for the on-grid GGUF benchmark (bench/gguf-ongrid.ts): for each domain of
train_pairs.py, the 24,000 characters of its training text just before the held-out cut (cut at
a line), written to <out>/calibrate/<domain>.txt. Text from where the model runs that is not the
held-out text the payloads are measured on, as a team would calibrate on its own domain's text.

    ~/.cache/neural-diff/py/bin/python bench/llm/calibration-text.py [OUT]   # OUT: ~/.cache/neural-diff/llm-pairs
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_pairs  # noqa: E402

CHARS = 24_000


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.expanduser('~/.cache/neural-diff/llm-pairs')
    os.makedirs(os.path.join(out, 'calibrate'), exist_ok=True)
    texts = {'python-doc': train_pairs.read_tree(train_pairs.PY_DOC, ('.rst.txt', '.txt')), 'fortunes': train_pairs.fortunes_text(), 'bible': train_pairs.bible_text()}
    for name, text in texts.items():
        train, _ = train_pairs.split_held_out(text)
        cut = train.find('\n', len(train) - CHARS)
        path = os.path.join(out, 'calibrate', f'{name}.txt')
        with open(path, 'w', encoding='utf-8') as fh:
            fh.write(train[cut + 1:])
        print(f'calibration text: {path} ({len(train) - cut - 1} characters just before the held-out cut of {name})')


if __name__ == '__main__':
    main()
