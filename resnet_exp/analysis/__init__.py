"""Post-hoc analyses of a trained network: why residual networks train where plain ones do not.

    lesion.py     Veit et al. 2016: accuracy with residual branches removed, one and k at a time
    landscape.py  Li et al. 2018: loss along filter-normalised random directions (1D and 2D)
    sharpness.py  the top eigenvalue of the loss Hessian, by power iteration on Hessian-vector
                  products (torch.func)
    cka.py        Kornblith et al. 2019: linear CKA between layers (minibatch, Nguyen et al. 2021)

Each takes a model in evaluation mode and a fixed batch of images; `python -m resnet_exp.analyze`
runs them on a finished run folder (resnet_exp/analyze.py). Lesion and CKA see the model's parts
only as it declares them (`structure()`, resnet_exp/models/structure.py).
"""
