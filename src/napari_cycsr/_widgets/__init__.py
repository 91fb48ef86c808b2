"""napari widgets of napari-cycsr: thin Qt/magicgui fronts over the core library.

One module per widget (``fibres``, ``train``, ``super_resolve``, ``evaluate``); shared helpers
live in ``_common``. The npe2 manifest (``napari.yaml``) points at the widget classes.
"""
