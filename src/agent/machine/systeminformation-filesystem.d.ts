// systeminformation's file-system module alone: its index loads every module (about 700 KiB of code the
// agent never runs), and the agent calls only fsSize.
declare module "systeminformation/lib/filesystem.js" {
  import type { Systeminformation } from "systeminformation";

  export function fsSize(): Promise<Systeminformation.FsSizeData[]>;
}
