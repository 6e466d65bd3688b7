//! TODO(helper): reference for `shaders/timestep.wgsl`.
