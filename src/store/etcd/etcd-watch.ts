import type { Etcd3, IWatchRequest, IWatchResponse } from "etcd3";

export interface WatchStreamOptions {
  key: Buffer;
  rangeEnd: Buffer;
  /** First revision to deliver; at least 1 (etcd reads 0 as "from now"). */
  startRevision: number;
  onResponse: (response: IWatchResponse) => void;
  /** The stream failed or ended without being cancelled by us. */
  onError: (error: Error) => void;
}

export interface WatchStream {
  /** Stops the stream; no callback runs after this. */
  cancel(): void;
}

/**
 * One etcd watch on a gRPC stream of its own. The etcd3 client's own Watcher hides `compact_revision`
 * when etcd cancels a watch on compacted history, and a store must report that revision, so this speaks
 * the Watch RPC directly.
 */
export function openWatchStream(client: Etcd3, options: WatchStreamOptions): WatchStream {
  let stream: Awaited<ReturnType<Etcd3["watchClient"]["watch"]>> | undefined;
  let cancelled = false;
  const fail = (error: Error): void => {
    if (cancelled) return;
    cancelled = true;
    stream?.cancel();
    options.onError(error);
  };
  client.watchClient.watch().then(
    (opened) => {
      stream = opened;
      if (cancelled) {
        opened.on("error", () => {});
        opened.cancel();
        return;
      }
      opened.on("data", (response) => {
        if (!cancelled) options.onResponse(response);
      });
      opened.on("error", (error) => fail(error));
      opened.on("end", () => fail(new Error("the etcd watch stream ended")));
      const request: IWatchRequest = {
        create_request: {
          key: options.key,
          range_end: options.rangeEnd,
          start_revision: options.startRevision,
          prev_kv: true,
        },
      };
      opened.write(request);
    },
    (error: unknown) => fail(error instanceof Error ? error : new Error(String(error))),
  );
  return {
    cancel(): void {
      if (cancelled) return;
      cancelled = true;
      if (stream !== undefined) {
        stream.on("error", () => {});
        stream.cancel();
      }
    },
  };
}
