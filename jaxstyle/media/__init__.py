"""Pictures and clips in and out: reading and writing images (colour-managed), clips and their
optical flow, colour transfer, and the measures of a result. Imports only :mod:`jaxstyle.core`."""
