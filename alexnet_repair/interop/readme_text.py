"""The README.md written into a VNN-COMP benchmark folder."""

from __future__ import annotations


# Over 60 lines: a template of the benchmark folder's README, kept whole so it reads as the file it writes.
def benchmark_readme(record: dict, names: list[str]) -> str:
    m, e, enc = record["margin"], record["epsilon"], record["encoding"]
    first = names[0] if names else "vnnlib/edit_0000.vnnlib"
    outputs = record["outputs"]
    if outputs == 20:
        output_text = (f"`Y_0..Y_9` are the logits and `Y_10..Y_19` the logits minus {m:g} (the network's last Gemm "
                       f"repeats its rows with the bias lowered by {m:g}), so `Y_t - Y_c <= {m:g}` is written "
                       f"`(<= Y_{{10+t}} Y_c)` in the simple VNN-LIB subset every VNN-COMP parser reads.")
    elif enc == "linear":
        output_text = (f"`Y_0..Y_9` are the logits; each disjunct is `(<= (- Y_t Y_c) {m:g})`, full VNN-LIB "
                       f"arithmetic (the VNN-COMP `read_vnnlib_simple` parsers, e.g. alpha-beta-CROWN's, need the "
                       f"simple encoding instead: `convert_model.py vnnlib ... --encoding simple`).")
    else:
        output_text = "`Y_0..Y_9` are the logits; each disjunct is `(<= Y_t Y_c)`."
    box = "the edit image itself (a single point)" if e == 0 else \
        f"the L-infinity ball of radius {e:g} around the edit image, clipped to [0, 1]"
    return f"""# VNN-COMP benchmark: {len(names)} edit images of `{record['checkpoint']}`

Written by `convert_model.py vnnlib` (alexnet_repair). One property per edit image of
`{record['edit_set']}`; margin M = {m:g}, radius E = {e:g}, {enc} encoding, timeout {record['timeout']:g} s.

```
onnx/model.onnx       the model (opset {record['opset']}, input "input" of shape [1, 3, 64, 64], {outputs} outputs)
vnnlib/*.vnnlib       one property per edit image
instances.csv         onnx,vnnlib,timeout rows (paths relative to this folder, no header)
benchmark.json        provenance: checkpoint sha256, edit set, per-instance label, dataset index, margin at the image
```

## What each property says

The property is on the model's input *after* preprocessing (resize to 70, centre-crop 64, scale to [0, 1], no
normalisation): `X_0 .. X_12287` are the 3x64x64 input in C,H,W order (`X_(c*4096 + h*64 + w)`), values in [0, 1].
The input box is {box}.

As VNN-LIB requires, each file states the *negation* of the safety property: some other class c with
`Y_t - Y_c <= M` (t = the image's label). **`unsat` means verified**: on every input of the box,
`Y_t - Y_c > M` for every other class (so the margin is at least M); `sat` comes with a counterexample.
{output_text}

`benchmark.json` records each image's margin as torch and onnxruntime compute it. Both are float32 evaluations,
a verifier's arithmetic is another: a model repaired with margin exactly M (the repair keeps a 1e-4 slack) can
miss M by rounding when its weights are large, so check such models at a slightly smaller margin.

## Running a verifier

alpha-beta-CROWN, one instance (any config; command-line flags override it):

```
cd alpha-beta-CROWN/complete_verifier
python abcrown.py --config exp_configs/<a config of yours>.yaml \\
    --onnx_path BENCH/onnx/model.onnx --vnnlib_path BENCH/{first} --timeout {record['timeout']:g}
```

Every instance, VNN-COMP style (`BENCH` = this folder):

```
while IFS=, read -r onnx vnnlib timeout; do
    python abcrown.py --config my.yaml --onnx_path "BENCH/$onnx" --vnnlib_path "BENCH/$vnnlib" --timeout "$timeout"
done < BENCH/instances.csv
```

At E = 0 each box is one point, so a property can also be decided by running the network once:
`python -c "from alexnet_repair.interop.vnnlib import check_instance; print(check_instance('BENCH/onnx/model.onnx', 'BENCH/{first}'))"`
prints `unsat` or `sat` (for E > 0 it only samples the box: `sat` or `unknown`).
"""
