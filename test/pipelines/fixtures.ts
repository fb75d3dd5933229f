/** The integration guide's config, exactly (nanoping-wire.md, "Pipeline config used by the guide"). */
export const guideConfig = JSON.stringify(
  {
    version: 13,
    plumr_config: {
      pipeline: {
        "traffic_sink-1": {
          traffic_sink: { input: "[traffic_sink-1|in:0]-[uniform_traffic_source-1|out:0]", mtu: 1500 },
        },
        "uniform_traffic_source-1": {
          uniform_traffic_source: {
            output: "[traffic_sink-1|in:0]-[uniform_traffic_source-1|out:0]",
            total_packets: 5000,
            interval: 25,
          },
        },
      },
    },
  },
  null,
  2,
);

export const processConfig = (argv: string[]): string =>
  JSON.stringify({ version: 13, plumr_config: { pipeline: { "process-1": { process: { argv } } } } });
