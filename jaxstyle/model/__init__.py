"""The network and the equations: VGG-19 as a pure function of its weights, the weights' readers,
the paper's losses, the other style losses and loss terms from files. Imports only the layers below."""
