import type { JobRecord, NodeRunRecord } from "./provisioning-job.ts";
import type { Plan } from "./provisioning-plan.ts";

/** What faces see of the provisioning engine; the controller's dispatcher implements it. */
export interface RunPlanInput {
  /** "name" or "name@version". */
  readonly plan: string;
  /** Node ids or names; exactly one of nodes, all and selector. */
  readonly nodes: readonly string[];
  /** Every ready agent. */
  readonly all: boolean;
  /** Every ready agent with all these labels. */
  readonly selector: Readonly<Record<string, string>>;
  readonly parameters: Readonly<Record<string, string>>;
  readonly dryRun: boolean;
  /** 0: the controller's default. */
  readonly concurrency: number;
  /** Who asked, for the record (describePrincipal). */
  readonly createdBy: string;
}

/** A job with every target node's part (queued nodes shown with pending steps). */
export interface JobView {
  readonly job: JobRecord;
  readonly nodes: readonly NodeRunRecord[];
  /** The store revision the node records were read at: watch from revision + 1. */
  readonly revision: number;
}

export interface PlanCatalog {
  readonly plans: readonly Plan[];
  /** Plan files that were refused, each problem naming the file, line, step and field. */
  readonly problems: readonly { readonly file: string; readonly message: string }[];
}

export interface ProvisioningEngine {
  listPlans(): Promise<PlanCatalog>;
  runPlan(input: RunPlanInput): Promise<JobView>;
  getJob(jobId: string): Promise<JobView>;
  /** Newest first. */
  listJobs(limit: number): Promise<JobView[]>;
  retryJob(jobId: string, by: string): Promise<JobView>;
  cancelJob(jobId: string, by: string): Promise<JobView>;
}
