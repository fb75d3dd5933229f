import type { ServiceImpl } from "@connectrpc/connect";
import type { ControlPlane } from "../../gen/control_plane_pb.ts";
import type { FaceContext } from "../face-context.ts";

export function cartActorControlPlane({
  facts,
  clock,
}: FaceContext): Partial<ServiceImpl<typeof ControlPlane>> {
  return {
    ping() {
      return { host: facts.advertiseAddress, unixTime: BigInt(Math.floor(clock.now() / 1000)) };
    },
  };
}
