import type { SealedBox } from "./ca-key-file.ts";

/** Where the cluster's CA state lives in the store (inside the store's prefix). */
export const caStateKey = "/ca/state";

/** One CA the cluster trusts: its certificate in clear, its key sealed in the record or in a file. */
export interface CaRecord {
  readonly id: string;
  readonly fingerprint: string;
  readonly certificatePem: string;
  readonly key: { readonly sealed: SealedBox } | { readonly file: string };
  readonly createdAt: number;
}

/**
 * The cluster's CAs. Outside a rotation there is one, which signs everything. During a rotation there
 * are two, both trusted: the new one (`issuing`) signs node and operator certificates, so members move
 * onto it as they renew; the old one (`presenting`) still signs the controllers' own certificates, which
 * members that have not yet fetched the new trust bundle must be able to check. When the overlap ends,
 * the old one is no longer trusted and the new one signs everything.
 */
export interface CaState {
  readonly version: 1;
  /** Oldest first. */
  readonly cas: readonly CaRecord[];
  readonly issuing: string;
  readonly presenting: string;
  readonly rotation?: {
    readonly previous: string;
    readonly startedAt: number;
    readonly overlapEndsAt: number;
    readonly by: string;
  };
}

export function initialState(record: CaRecord): CaState {
  return { version: 1, cas: [record], issuing: record.id, presenting: record.id };
}

/** The state as it holds at `now`: a rotation whose overlap has passed is complete, with no write needed. */
export function effectiveState(state: CaState, now: number): CaState {
  const rotation = state.rotation;
  if (rotation === undefined || now < rotation.overlapEndsAt) return state;
  return {
    version: 1,
    cas: state.cas.filter((ca) => ca.id !== rotation.previous),
    issuing: state.issuing,
    presenting: state.issuing,
  };
}

export function rotatedState(
  state: CaState,
  next: CaRecord,
  now: number,
  overlapMs: number,
  by: string,
): CaState {
  return {
    version: 1,
    cas: [...state.cas.filter((ca) => ca.id === state.presenting), next],
    issuing: next.id,
    presenting: state.presenting,
    rotation: { previous: state.presenting, startedAt: now, overlapEndsAt: now + overlapMs, by },
  };
}

export function parseCaState(text: string): CaState {
  const value = JSON.parse(text) as CaState;
  if (value.version !== 1 || !Array.isArray(value.cas) || value.cas.length === 0) {
    throw new Error("the CA state in the store is not a version 1 record");
  }
  return value;
}

/** The certificates members must trust, the presenting CA first (tools that read one certificate get it). */
export function trustBundlePem(state: CaState): string {
  const ordered = [
    ...state.cas.filter((ca) => ca.id === state.presenting),
    ...state.cas.filter((ca) => ca.id !== state.presenting),
  ];
  return ordered.map((ca) => `${ca.certificatePem.trimEnd()}\n`).join("");
}
