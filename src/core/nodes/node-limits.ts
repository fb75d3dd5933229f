/** Bounds on what a peer may put into a node record; they keep one record far below the store's value limit. */
export const nodeLimits = {
  maxIdLength: 128,
  maxNameLength: 128,
  maxMetadataKeys: 64,
  maxMetadataKeyLength: 128,
  maxMetadataValueBytes: 4096,
  maxLabels: 64,
  maxLabelKeyLength: 128,
  maxLabelValueLength: 256,
  maxGpus: 64,
  maxDisks: 64,
  maxTextLength: 256,
  maxMountLength: 1024,
  maxHostLength: 253,
} as const;
