/**
 * KGC Compliance Cloud job helpers: the drop-in replacement for the Next.js app's
 * `src/lib/job-helpers.ts`. Same exported names and arguments; the jobs now live in
 * PostgreSQL behind the jobs API (`/api/v1/`), so there is no Redis or BullMQ here.
 *
 * Configuration, read at each call (so tests and rotations need no restart):
 *   KGC_JOBS_URL    the jobs service's base URL, e.g. https://jobs.internal.example
 *   KGC_JOBS_TOKEN  one of the service's KGC_API_TOKENS
 *
 * No runtime dependencies: Node 18+'s global fetch. Every failure is thrown as a
 * `JobsApiError` carrying the HTTP status, the server's message and its field errors.
 */

export type QueueName = 'compliance' | 'expiry-notification' | 'filing-reminder' | 'email';

export type EmailTemplate = 'document-expiry' | 'filing-reminder' | 'compliance-alert' | 'custom';

/** A queued job: `id` is a string, as BullMQ's `job.id` was. */
export interface EnqueuedJob {
  id: string;
  queue: string;
  name: string;
}

/** A queue's job counts, in BullMQ's shape, and whether it is paused. */
export interface QueueStats {
  waiting: number;
  active: number;
  delayed: number;
  completed: number;
  failed: number;
  paused: number;
  cancelled: number;
  /** True while the queue is paused (BullMQ's `queue.isPaused()`). */
  isPaused: boolean;
}

/** A tenant's id, or its slug (as the service's commands take `--tenant`). */
export type TenantRef = number | string;

export type AllQueueStats = Record<QueueName, QueueStats>;

export interface QueueState {
  queue: QueueName;
  paused: boolean;
  /** False when the queue already was in that state. */
  changed: boolean;
}

export interface CleanupResult {
  queue: QueueName;
  /** How many completed (and cancelled) jobs were deleted. */
  completed: number;
  /** How many failed jobs were deleted. */
  failed: number;
}

export interface ComplianceRefreshOptions {
  /**
   * Why the refresh was asked for, kept on each score (default 'manual'): 'manual', 'schedule',
   * 'document_upload', 'document_update', 'filing_update', 'client_update', 'admin' or 'command',
   * optionally followed by ':' and who or what ('manual:ana@firm.example'). Anything else is a 400.
   */
  triggeredBy?: string;
  /** As in BullMQ: 1 is the highest priority, larger numbers are lower. */
  priority?: number;
}

/** How soon an email goes: every urgent one before any other; within a priority, each firm in turn. */
export type EmailPriority = 'urgent' | 'high' | 'normal' | 'low';

export interface EmailJob {
  recipientEmail: string;
  recipientName: string;
  subject: string;
  template: EmailTemplate | string;
  data: Record<string, unknown>;
  tenantId: number;
  /** Omitted: normal. */
  priority?: EmailPriority;
}

/** Where one queued email stands (`enqueueEmail`'s id). */
export interface EmailState {
  id: number;
  queue: 'email';
  tenantId: number;
  status: 'queued' | 'retrying' | 'sending' | 'sent' | 'failed' | 'suppressed';
  priority: EmailPriority;
  attempts: number;
  lastError: string;
  /** It may have reached the recipient, but nobody can tell: nothing sends it again on its own. */
  deliveryUnknown: boolean;
  messageId: string;
  createdAt: string;
  sentAt: string | null;
}

export interface CleanupOptions {
  /** Delete completed jobs that finished more than this many milliseconds ago (omitted: keep them). */
  completedAge?: number;
  /** Delete failed jobs that failed more than this many milliseconds ago (omitted: keep them). */
  failedAge?: number;
}

/** The kinds of notification a member chooses emails for. */
export type NotificationKind = 'documentExpiry' | 'filingReminder' | 'complianceAlert' | 'filingEscalation';

/** How a kind is emailed: one email each, in the daily digest (urgent ones still at once), or not at all. */
export type EmailPreference = 'immediate' | 'daily_digest' | 'off';

/** A member's notification email choices in one tenant. */
export interface NotificationPreferences {
  tenantId: number;
  userId: number;
  /** What applies to a kind the member has not chosen for. */
  tenantDefault: 'immediate' | 'daily_digest';
  /** The member's own choice per kind; null: the tenant's default applies. */
  preferences: Record<NotificationKind, EmailPreference | null>;
  /** What applies to each kind. */
  effective: Record<NotificationKind, EmailPreference>;
}

/** Any failure of a job helper: `status` is the HTTP status (0 when no answer came). */
export class JobsApiError extends Error {
  readonly status: number;
  /** What is wrong with each field of the request, by its camelCase name (400 only). */
  readonly errors: Record<string, string>;

  constructor(status: number, message: string, errors: Record<string, string> = {}) {
    super(message);
    this.name = 'JobsApiError';
    this.status = status;
    this.errors = errors;
  }
}

interface Environment {
  process?: { env?: Record<string, string | undefined> };
}

function setting(name: string): string {
  // globalThis rather than `process`: no dependency on @types/node for the app's build.
  const value = (globalThis as Environment).process?.env?.[name]?.trim();
  if (!value) {
    throw new JobsApiError(0, `${name} is not set: the job helpers need KGC_JOBS_URL and KGC_JOBS_TOKEN`);
  }
  return value;
}

async function request<T>(method: 'GET' | 'POST' | 'PUT', path: string, body?: object): Promise<T> {
  const url = `${setting('KGC_JOBS_URL').replace(/\/+$/, '')}/api/v1/${path}`;
  const headers: Record<string, string> = {
    Authorization: `Bearer ${setting('KGC_JOBS_TOKEN')}`,
    Accept: 'application/json',
  };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let response: Response;
  try {
    response = await fetch(url, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch (cause) {
    const reason = cause instanceof Error ? cause.message : String(cause);
    throw new JobsApiError(0, `the jobs API at ${url} did not answer: ${reason}`);
  }
  const text = await response.text();
  let payload: unknown;
  try {
    payload = text ? JSON.parse(text) : undefined;
  } catch {
    payload = undefined;
  }
  if (!response.ok) {
    const problem = (payload ?? {}) as { error?: unknown; errors?: unknown };
    const message = typeof problem.error === 'string' ? problem.error : `HTTP ${response.status} from ${url}`;
    const errors = problem.errors && typeof problem.errors === 'object' ? (problem.errors as Record<string, string>) : {};
    throw new JobsApiError(response.status, message, errors);
  }
  if (payload === undefined) {
    throw new JobsApiError(response.status, `the jobs API at ${url} answered without JSON`);
  }
  return payload as T;
}

async function enqueue(path: string, body: object): Promise<EnqueuedJob> {
  const job = await request<{ id: number; queue: string; name: string }>('POST', path, body);
  return { id: String(job.id), queue: job.queue, name: job.name };
}

function queuePath(name: string, action?: string): string {
  return `queues/${encodeURIComponent(name)}${action ? `/${action}` : ''}`;
}

/**
 * Refresh one tenant's compliance scores (or every active tenant's when `tenantId` is
 * omitted); `tenantId` is the tenant's id or slug. A tenant with a refresh already waiting gets that job back, not a second one.
 */
export async function enqueueComplianceRefresh(
  tenantId?: TenantRef | null,
  options: ComplianceRefreshOptions = {},
): Promise<EnqueuedJob> {
  return enqueue('jobs/compliance-refresh', {
    tenantId: tenantId ?? undefined,
    triggeredBy: options.triggeredBy,
    priority: options.priority,
  });
}

/** Check expiring documents (7, 14 and 30 days ahead) for one tenant, or every active tenant. */
export async function enqueueExpiryCheck(tenantId?: TenantRef | null): Promise<EnqueuedJob> {
  return enqueue('jobs/expiry-check', { tenantId: tenantId ?? undefined });
}

/** Check filings due in 3, 7 and 14 days for one tenant, or every active tenant. */
export async function enqueueFilingReminder(tenantId?: TenantRef | null): Promise<EnqueuedJob> {
  return enqueue('jobs/filing-reminder', { tenantId: tenantId ?? undefined });
}

/** Queue one email; the template's data is checked when it is queued. The answer's id is the email's (`getEmail`). */
export async function enqueueEmail(email: EmailJob): Promise<EnqueuedJob> {
  return enqueue('jobs/email', {
    recipientEmail: email.recipientEmail,
    recipientName: email.recipientName,
    subject: email.subject,
    template: email.template,
    data: email.data,
    tenantId: email.tenantId,
    priority: email.priority,
  });
}

/** Where a queued email stands, by the id `enqueueEmail` answered. */
export async function getEmail(id: string | number): Promise<EmailState> {
  return request<EmailState>('GET', `emails/${encodeURIComponent(String(id))}`);
}

/** The four queues' job counts, keyed by queue name. */
export async function getAllQueueStats(): Promise<AllQueueStats> {
  return request<AllQueueStats>('GET', 'queues');
}

/** One queue's job counts. */
export async function getQueueStats(name: QueueName | string): Promise<QueueStats> {
  return request<QueueStats>('GET', queuePath(name));
}

/** Stop workers from starting this queue's jobs; running jobs finish. */
export async function pauseQueue(name: QueueName | string): Promise<QueueState> {
  return request<QueueState>('POST', queuePath(name, 'pause'), {});
}

/** Let workers start this queue's jobs again. */
export async function resumeQueue(name: QueueName | string): Promise<QueueState> {
  return request<QueueState>('POST', queuePath(name, 'resume'), {});
}

/** Delete this queue's jobs that finished longer ago than the ages (milliseconds). */
export async function cleanupQueue(name: QueueName | string, options: CleanupOptions = {}): Promise<CleanupResult> {
  return request<CleanupResult>('POST', queuePath(name, 'cleanup'), {
    completedAge: options.completedAge,
    failedAge: options.failedAge,
  });
}

function preferencesPath(tenantId: number, userId: number): string {
  return `tenants/${encodeURIComponent(String(tenantId))}/users/${encodeURIComponent(String(userId))}/notification-preferences`;
}

/** A member's notification email choices in a tenant (404 if the user is not a member of it). */
export async function getNotificationPreferences(tenantId: number, userId: number): Promise<NotificationPreferences> {
  return request<NotificationPreferences>('GET', preferencesPath(tenantId, userId));
}

/**
 * Change a member's choices for the kinds given; null puts a kind back on the tenant's
 * default, and kinds left out keep theirs. All or nothing: a bad value is a 400 naming
 * it (`errors['preferences.documentExpiry']`) and changes nothing.
 */
export async function setNotificationPreferences(
  tenantId: number,
  userId: number,
  preferences: Partial<Record<NotificationKind, EmailPreference | null>>,
): Promise<NotificationPreferences> {
  return request<NotificationPreferences>('PUT', preferencesPath(tenantId, userId), { preferences });
}

/** A firm's reminder thresholds (days before the date) and its holiday calendar. */
export interface ReminderSettings {
  tenantId: number;
  /** The firm's own thresholds, largest first; null: the default (30, 14, 7). */
  expiryReminderDays: number[] | null;
  /** The firm's own thresholds, largest first; null: the default (14, 7, 3). */
  filingReminderDays: number[] | null;
  /** ISO country code of its holiday calendar (US); '': none, due dates never move. */
  holidayCountry: string;
  /** A subdivision of that country (DC); '': the whole country. */
  holidaySubdivision: string;
  /** The thresholds that apply. */
  effective: { expiryReminderDays: number[]; filingReminderDays: number[] };
}

function reminderSettingsPath(tenantId: number): string {
  return `tenants/${encodeURIComponent(String(tenantId))}/reminder-settings`;
}

/** A firm's reminder thresholds and holiday calendar (404 for an unknown or inactive tenant). */
export async function getReminderSettings(tenantId: number): Promise<ReminderSettings> {
  return request<ReminderSettings>('GET', reminderSettingsPath(tenantId));
}

/**
 * Change the settings given; null puts thresholds back on the default (or removes the
 * calendar), and settings left out keep theirs. All or nothing: a bad value is a 400
 * naming it (`errors.expiryReminderDays`) and changes nothing.
 */
export async function setReminderSettings(
  tenantId: number,
  settings: Partial<{
    expiryReminderDays: number[] | null;
    filingReminderDays: number[] | null;
    holidayCountry: string | null;
    holidaySubdivision: string | null;
  }>,
): Promise<ReminderSettings> {
  return request<ReminderSettings>('PUT', reminderSettingsPath(tenantId), settings);
}
