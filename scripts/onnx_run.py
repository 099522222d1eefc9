"""Runs an ONNX model with ONNX Runtime (CPU) on the `input` tensor of a safetensors file and
writes every graph output to another safetensors file, with the model's metadata as the file's
`__metadata__`. `onnx.checker` (full check, with shape inference) runs first when the `onnx`
package is installed. Used by `tests/onnx_export.rs` (Rust side) to hold `deepmark export`'s
graphs to the Burn forward and to PyTorch.

    python scripts/onnx_run.py model.onnx input.safetensors outputs.safetensors

Needs numpy and onnxruntime (`pip install onnxruntime`); safetensors files are read and written
here by their documented layout (little-endian u64 header length, JSON header, raw data).
"""
import json
import struct
import sys

import numpy as np
import onnxruntime as ort


def read_safetensors(path):
    data = open(path, "rb").read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {info['dtype']}, expected F32")
        start, end = info["data_offsets"]
        out[name] = np.frombuffer(data[base + start : base + end], dtype="<f4").reshape(info["shape"])
    return out


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        raw = np.ascontiguousarray(t, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def main():
    model, inputs, outputs = sys.argv[1:4]
    try:
        import onnx

        onnx.checker.check_model(onnx.load(model), full_check=True)
    except ImportError:
        pass
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    x = read_safetensors(inputs)["input"]
    names = [o.name for o in session.get_outputs()]
    results = session.run(names, {session.get_inputs()[0].name: x})
    metadata = dict(session.get_modelmeta().custom_metadata_map)
    write_safetensors(outputs, dict(zip(names, results)), metadata)


if __name__ == "__main__":
    main()
