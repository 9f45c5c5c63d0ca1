"""Edit sets: building them (``build``), their type (``editset``) and their files (``files``)."""

from alexnet_repair.editsets.build import (build_editset, candidate_indices, class_histogram, default_editset_path,
                                           describe_kind, parse_class, parse_sweep_type, split_sizes)
from alexnet_repair.editsets.editset import (CLASS_LIST, FOCUSES, FORMAT, FORMAT_VERSION, IMAGE_SHAPE, KINDS, SIZINGS,
                                             SWEEP_TYPES, TENSOR_KEYS, EditSet)
from alexnet_repair.editsets.files import check_against_split, load_editset, load_editset_for, save_editset
from alexnet_repair.editsets.preserve import PreserveSet, draw_preserve_set

__all__ = ["CLASS_LIST", "FOCUSES", "FORMAT", "FORMAT_VERSION", "IMAGE_SHAPE", "KINDS", "SIZINGS", "SWEEP_TYPES",
           "TENSOR_KEYS", "EditSet", "PreserveSet", "draw_preserve_set", "build_editset", "candidate_indices", "check_against_split", "class_histogram",
           "default_editset_path", "describe_kind", "load_editset", "load_editset_for", "parse_class",
           "parse_sweep_type", "save_editset", "split_sizes"]
