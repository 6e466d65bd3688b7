//! TODO(helper): `shaders/timestep.wgsl` dispatch.
