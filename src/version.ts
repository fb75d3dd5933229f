import packageJson from "../package.json" with { type: "json" };

export const corralVersion: string = packageJson.version;
