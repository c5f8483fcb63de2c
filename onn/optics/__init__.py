"""Physics of the metasurface frontend (SPEC §1), as pure functions on tensors in SI metres.

- `constants`: the authors' reference values (wavelengths, meta-atom phase fits, geometry).
- `geometry`: `OpticalGeometry`, the one place design units (mm, nm, µm) become metres.
- `propagation`: band-limited angular-spectrum propagation with cached transfer functions.
- `metasurface`: pillar widths -> per-wavelength phase, fabrication limits, quantisation.
- `psf`: sub-optic intensity PSFs on the sensor and their integration onto kernel pixels.
- `layout`: how many sub-optics / signed kernels fit on a metasurface, and where they image.
- `sensor`: gain, Poisson-Gaussian noise and quantisation, seeded by an explicit generator.
- `inverse_design`: pillar-width maps whose PSFs reproduce signed kernels.
- `validity`: refuse designs the simulation cannot represent faithfully, saying what to change.
"""

from onn.optics.geometry import OpticalGeometry
from onn.optics.validity import InfeasibleDesign

__all__ = ["InfeasibleDesign", "OpticalGeometry"]
