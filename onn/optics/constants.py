"""Reference values from the authors' design code (SPEC §1). Units are in the names."""

from __future__ import annotations

# Colour camera channels and the monochromatic design wavelength.
WAVELENGTHS_NM = {"R": 635.0, "G": 532.0, "B": 450.0}

# Named wavelength sets a sweep file may use; order is the colour-channel order of the images.
WAVELENGTH_SETS_NM: dict[str, tuple[float, ...]] = {
    "mono": (532.0,),
    "rgb": (635.0, 532.0, 450.0),
    "rg": (635.0, 532.0),
    "gb": (532.0, 450.0),
}

# Phase of a square SiN pillar (750 nm tall) versus its width w (µm), in waves:
#   phi(w) = -A * (exp((w^2 - 2 w0 w) / (-s)) - 1)
# Fitted per wavelength by the authors; amplitude is taken as 1.
PHASE_FIT = {  # wavelength_nm -> (A, w0_um, s_um2)
    635.0: (5.03593, 0.0122, 0.28081),
    532.0: (2.28293, 0.01878, 0.07134),
    450.0: (1.87336, 0.0237, 0.03191),
}

PILLAR_MIN_WIDTH_UM = 0.060  # narrower pillars cannot be made: no pillar (width 0)
PILLAR_MAX_WIDTH_UM = 0.233  # lattice period 293 nm minus the fabrication gap
LATTICE_PERIOD_UM = 0.293
DESIGN_PITCH_UM = 0.586  # one design sample = 2x2 pillars
REFERENCE_MASK_RES = 1600  # samples per sub-optic side in the authors' code -> 0.938 mm aperture
DISTANCE_MM = 2.4  # metasurface -> sensor
KERNEL_PIXEL_UM = 11.72  # one kernel pixel on the sensor (2x2 sensor pixels of 5.86 µm)
SENSOR_PIXEL_UM = 5.86
SUBOPTIC_SPACING_MM = 0.1  # our default fabrication spacing between sub-optics (paper gives none)
