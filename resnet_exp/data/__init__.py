"""The data: modules that load a dataset, split it and serve batches, and the augmentation.

    module.py        DataModule: splits, loaders, on-device preprocessing (what every set shares)
    order.py         the training order and the place in it (shuffle, resume position, batches)
    memory.py        sets held in memory: Digits, Synthetic, CIFAR10, CIFAR100, FashionMNIST
    folders.py       image folders: ImageFolder, ImageNet
    augment.py       Augmentation, batched on the training device
    auto_augment.py  TrivialAugment, RandAugment and AutoAugment, per image, batched

The data modules are re-exported here for Python users; conf/data/*.yaml name each by its canonical
path (`resnet_exp.data.memory.CIFAR10`): a saved config may name nothing else (runs/trust.py).
"""

from resnet_exp.data.augment import Augmentation
from resnet_exp.data.folders import ImageFolder, ImageNet
from resnet_exp.data.memory import CIFAR10, CIFAR100, Digits, FashionMNIST, InMemory, Synthetic
from resnet_exp.data.module import DataModule

__all__ = ["Augmentation", "CIFAR10", "CIFAR100", "DataModule", "Digits", "FashionMNIST",
           "ImageFolder", "ImageNet", "InMemory", "Synthetic"]
