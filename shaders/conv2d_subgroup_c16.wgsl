// requires: conv2d_weights_f32.wgsl, conv2d_common.wgsl, conv2d_subgroup.wgsl
// features: subgroup
// conv2d forward with subgroup-shared weights, tile 4 rows × 4 columns × 16 channels (variant `subgroup16`): fewer input loads per FMA, less waste on narrow images.

const TC: u32 = 4u;
const TQ: u32 = 4u;
