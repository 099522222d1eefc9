"""A large keypoint results file for the evaluator's memory measurement (benches/RESULTS.md).

Writes N detections (default 20,000) spread over the images of a DeepFashion2 COCO-style
ground truth, each with 294 keypoints, random but valid (finite, inside the image):

    python3 scripts/big_results.py ../shared/data/deepfashion2/kgdet_demo32/demo_dataset-32.json \
        /tmp/big_results.json 20000

then `/usr/bin/time -v deepmark eval --gt <gt> --dt /tmp/big_results.json` reports the peak
resident memory ("Maximum resident set size").
"""

import json
import random
import sys


def main():
    gt_path, out_path = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20000
    gt = json.load(open(gt_path))
    images = gt["images"]
    rng = random.Random(5)
    with open(out_path, "w") as f:
        f.write("[")
        for i in range(n):
            img = images[i % len(images)]
            w, h = img["width"], img["height"]
            kps = []
            for _ in range(294):
                kps += [round(rng.uniform(0, w), 2), round(rng.uniform(0, h), 2), round(rng.random(), 4)]
            entry = {
                "image_id": img["id"],
                "category_id": 1 + i % 13,
                "keypoints": kps,
                "score": round(rng.random(), 4),
            }
            if i:
                f.write(",")
            f.write(json.dumps(entry))
        f.write("]")


if __name__ == "__main__":
    main()
