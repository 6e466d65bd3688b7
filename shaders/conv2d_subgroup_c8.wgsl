// requires: conv2d_weights_f32.wgsl, conv2d_common.wgsl, conv2d_subgroup.wgsl
// features: subgroup
// conv2d forward with subgroup-shared weights, tile 4 rows × 8 columns × 8 channels (variant `subgroup`).

const TC: u32 = 8u;
const TQ: u32 = 2u;
