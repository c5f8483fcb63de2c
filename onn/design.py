"""`Design`: one hybrid ONN hardware design point, in design units, and what follows from it.

This is the hand-off between a sweep's sampled parameters and the physics: a design knows its
sub-optic layout (how many kernels fit), its simulation geometry (metres), and checks itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from onn.optics import constants as C
from onn.optics.frame import fitted_haze
from onn.optics.geometry import OpticalGeometry
from onn.optics.layout import SubopticLayout, suboptic_layout
from onn.optics.sensor import SensorConfig
from onn.optics.validity import GeometryReport, InfeasibleDesign, check_geometry, min_mask_res


@dataclass(frozen=True)
class Design:
    """A hybrid ONN: metasurface frontend + digital backend.

    ``n_kernels=None`` uses every signed kernel the layout allows; a number asks for exactly that
    many and is infeasible if the metasurface cannot hold them.
    """

    aperture_mm: float = 2.0  # metasurface side H
    suboptic_mm: float = 0.4  # sub-optic side k
    spacing_mm: float = C.SUBOPTIC_SPACING_MM
    mask_res: int = 256  # design samples per sub-optic side (cost knob)
    wavelengths: str = "mono"  # a key of constants.WAVELENGTH_SETS_NM
    kernel_size: int = 7
    n_kernels: int | None = None
    hidden: tuple[int, ...] = (128,)  # backend FC widths; the backend has len(hidden) + 1 FC layers
    pool: int = 4  # digital average pooling after the nonlinearity
    backend: str = "mlp"  # "mlp" (classification) or "decoder" (segmentation)
    # Kernel groups imaged at kernel pixels of 1x, 2x, 4x ... (an optical multi-scale encoder for
    # segmentation); None: one group of every kernel at 1x.
    groups: tuple[int, ...] | None = None
    distance_mm: float = C.DISTANCE_MM
    kernel_pixel_um: float = C.KERNEL_PIXEL_UM
    sensor: SensorConfig = field(default_factory=SensorConfig)
    # Stray light in the kernel-level model (`onn.layers.OpticalConv`): light outside the kernel
    # window as a ratio to the light in it, spread evenly over the sub-image. 0: the idealisation that
    # a sub-optic's light all lands in its kernel window; `onn.optics.frame.fitted_haze` is what the
    # full-frame model measures for a geometry.
    haze: float = 0.0

    @property
    def wavelengths_nm(self) -> tuple[float, ...]:
        try:
            return C.WAVELENGTH_SETS_NM[self.wavelengths]
        except KeyError:
            raise InfeasibleDesign("wavelengths", f"unknown wavelength set {self.wavelengths!r}; use one of "
                                                  f"{sorted(C.WAVELENGTH_SETS_NM)}") from None

    @property
    def colours(self) -> int:
        return len(self.wavelengths_nm)

    @property
    def image_channels(self) -> tuple[int, ...] | None:
        """The RGB scene channel each camera colour sees (R, G, B = 0, 1, 2); None for a monochrome
        camera, which sees the mean of a colour scene."""
        if self.colours == 1:
            return None
        rgb = (C.WAVELENGTHS_NM["R"], C.WAVELENGTHS_NM["G"], C.WAVELENGTHS_NM["B"])
        return tuple(rgb.index(w) for w in self.wavelengths_nm)

    def layout(self) -> SubopticLayout:
        try:
            return suboptic_layout(self.aperture_mm, self.suboptic_mm, self.spacing_mm)
        except ValueError as exc:
            raise InfeasibleDesign(str(exc).split()[0], str(exc)) from None

    def kernels(self) -> int:
        """Signed kernels this design uses; raises `InfeasibleDesign` if the layout holds fewer."""
        available = self.layout().n_kernels
        if self.groups is not None and self.n_kernels is None:
            return self.with_(n_kernels=sum(self.groups)).kernels()
        if self.n_kernels is None:
            if available < 1:
                raise InfeasibleDesign("aperture_mm", f"a {self.aperture_mm} mm metasurface holds no pair of "
                                                      f"{self.suboptic_mm} mm sub-optics; make aperture_mm >= "
                                                      f"{2 * self.suboptic_mm + self.spacing_mm:.3f}")
            return available
        if self.n_kernels > available:
            need_mm = self.aperture_for(self.n_kernels)
            raise InfeasibleDesign("n_kernels", f"{self.n_kernels} signed kernels need {2 * self.n_kernels} sub-optics "
                                                f"but a {self.aperture_mm} mm metasurface holds {self.layout().n_suboptics}; "
                                                f"make aperture_mm >= {need_mm:.3f} or ask for <= {available} kernels",
                                   (self.n_kernels - available) / self.n_kernels)
        return self.n_kernels

    def aperture_for(self, n_kernels: int) -> float:
        """Smallest metasurface side (mm) whose square layout of this design's sub-optics holds
        ``n_kernels`` signed kernels (2 sub-optics each)."""
        side = _side_for(2 * n_kernels)
        return side * self.suboptic_mm + (side - 1) * self.spacing_mm

    def geometry(self) -> OpticalGeometry:
        return OpticalGeometry.from_design(suboptic_mm=self.suboptic_mm, mask_res=self.mask_res,
                                           wavelengths_nm=self.wavelengths_nm, kernel_size=self.kernel_size,
                                           distance_mm=self.distance_mm, kernel_pixel_um=self.kernel_pixel_um)

    def geometries(self) -> tuple[OpticalGeometry, ...]:
        """One geometry per kernel group: group i has kernel pixels 2^i times the base size."""
        return tuple(self.with_(kernel_pixel_um=self.kernel_pixel_um * 2**scale, groups=None).geometry()
                     for scale in range(len(self.groups or (0,))))

    def check(self, image_size: int | None = None) -> GeometryReport:
        """Every validity check (layout, geometry, footprint, memory); raises `InfeasibleDesign`."""
        if self.kernel_size % 2 == 0:
            raise InfeasibleDesign("kernel_size", f"must be odd (PSFs are centred on the axis), got {self.kernel_size}")
        if not self.haze >= 0:
            raise InfeasibleDesign("haze", f"is a ratio of light and must be >= 0, got {self.haze}")
        if self.pool < 1 or any(h < 1 for h in self.hidden):
            raise InfeasibleDesign("hidden", f"pool and hidden widths must be >= 1, got pool={self.pool}, "
                                             f"hidden={self.hidden}")
        if self.backend == "decoder" and len(self.hidden) != len(self.groups or (0,)):
            raise InfeasibleDesign("backend_depth", f"the decoder fuses one kernel group per width: groups "
                                                    f"{self.groups} need {len(self.groups or (0,))} widths, got "
                                                    f"hidden={self.hidden}")
        n_kernels = self.kernels()
        if self.groups is not None and sum(self.groups) != n_kernels:
            raise InfeasibleDesign("groups", f"kernel groups {self.groups} sum to {sum(self.groups)}, not n_kernels={n_kernels}")
        # Kernel groups are realised one at a time (`onn.fabrication.realise(group=...)`), so the
        # memory check counts the sub-optics of one group.
        groups = self.groups or (n_kernels,)
        reports = [check_geometry(geometry, image_size=None if image_size is None else image_size // 2**scale,
                                  spacing_mm=self.spacing_mm, n_fields=2 * groups[scale])
                   for scale, geometry in enumerate(self.geometries())]  # coarser groups: smaller images
        return reports[0]

    def fitted_haze(self) -> float:
        """The stray ratio the full-frame model measures on average at this geometry
        (`onn.optics.frame.fitted_haze`), for ``haze``."""
        return fitted_haze(self.colours, self.suboptic_mm, self.mask_res / min_mask_res(self.geometry()))

    def with_(self, **changes) -> "Design":
        return replace(self, **changes)


def _side_for(n_suboptics: int) -> int:
    side = 1
    while side * side < n_suboptics:
        side += 1
    return side


# The paper's two classification systems as named presets (SPEC §2), on our default geometry:
# 0.4 mm sub-optics sampled 256x256 (1.56 µm pitch) so that inverse design runs on a laptop.
PRESETS: dict[str, Design] = {
    # Compressed Meta ONN: 8 signed 7x7 kernels at 532 nm, 2 FC layers (~0.05 M parameters).
    "mono": Design(aperture_mm=2.0, n_kernels=8, wavelengths="mono", hidden=(128,), pool=4),
    # Polychromatic Meta ONN: 16 RGB 3x7x7 kernels, 3 FC layers (~1.6 M parameters).
    "poly": Design(aperture_mm=3.2, suboptic_mm=0.45, mask_res=288, n_kernels=16, wavelengths="rgb",
                   hidden=(384, 192), pool=2),
    # Custom polychromatic segmentation system: 56 RGB 3x3 kernels in groups of 8 / 16 / 32 at
    # three scales, up-convolution decoder (~1 M parameters).
    "seg": Design(aperture_mm=5.4, suboptic_mm=0.4, mask_res=224, n_kernels=56, groups=(8, 16, 32), kernel_size=3,
                  wavelengths="rgb",
                  hidden=(256, 128, 64), pool=1, backend="decoder"),
}
