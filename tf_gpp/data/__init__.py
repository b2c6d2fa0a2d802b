"""Datasets as ``tf.data`` pipelines with their metadata and recorded preprocessing."""

from tf_gpp.data import registry, streams
from tf_gpp.data.arrays import from_arrays, stratified_order, to_sparse_labels
from tf_gpp.data.bundle import Dataset
from tf_gpp.data.default import load_default
from tf_gpp.data.digits import load_digits
from tf_gpp.data.fashion_mnist import FASHION_MNIST_CLASSES, load_fashion_mnist
from tf_gpp.data.folder import from_image_folder
from tf_gpp.data.idx import load_idx, read_idx, write_idx
from tf_gpp.data.intake import (
    TaskInfo,
    as_dataset,
    as_tf_data,
    as_training_data,
    check_data,
    infer_task,
    labelled_batches,
)
from tf_gpp.data.preprocessing import Preprocessing
from tf_gpp.data.tfds import from_tfds

__all__ = [
    "FASHION_MNIST_CLASSES",
    "Dataset",
    "Preprocessing",
    "TaskInfo",
    "as_dataset",
    "as_tf_data",
    "as_training_data",
    "check_data",
    "from_arrays",
    "from_image_folder",
    "from_tfds",
    "infer_task",
    "labelled_batches",
    "load_default",
    "load_digits",
    "load_fashion_mnist",
    "load_idx",
    "read_idx",
    "registry",
    "stratified_order",
    "streams",
    "to_sparse_labels",
    "write_idx",
]
