/**
 * The job helpers against a live jobs API. The server is started by
 * tests/api/test_typescript_client.py, which sets:
 *   KGC_JOBS_URL, KGC_JOBS_TOKEN  the server and a valid token
 *   KGC_TEST_TENANT_ID            an active tenant with no documents or filings
 *   KGC_TEST_USER_ID              a member of that tenant with no email choices yet
 *   KGC_TEST_TENANT_SLUG          that tenant's slug
 *   KGC_TEST_RESULTS              a file where the enqueued jobs are written, for the
 *                                 worker that processes them afterwards
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { after, test } from 'node:test';

import {
  cleanupQueue,
  enqueueComplianceRefresh,
  enqueueEmail,
  enqueueExpiryCheck,
  enqueueFilingReminder,
  getAllQueueStats,
  getEmail,
  getNotificationPreferences,
  getReminderSettings,
  setReminderSettings,
  getQueueStats,
  JobsApiError,
  pauseQueue,
  resumeQueue,
  setNotificationPreferences,
} from '../job-helpers';

function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} must be set (run through tests/api/test_typescript_client.py)`);
  return value;
}

const tenantId = Number(required('KGC_TEST_TENANT_ID'));
const userId = Number(required('KGC_TEST_USER_ID'));
const tenantSlug = required('KGC_TEST_TENANT_SLUG');
const enqueued: Record<string, string> = {};

after(() => {
  writeFileSync(required('KGC_TEST_RESULTS'), JSON.stringify(enqueued));
});

async function withEnv<T>(name: string, value: string | undefined, run: () => Promise<T>): Promise<T> {
  const previous = process.env[name];
  if (value === undefined) delete process.env[name];
  else process.env[name] = value;
  try {
    return await run();
  } finally {
    if (previous === undefined) delete process.env[name];
    else process.env[name] = previous;
  }
}

async function rejection(promise: Promise<unknown>): Promise<JobsApiError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof JobsApiError, `expected a JobsApiError, got ${String(error)}`);
    return error;
  }
  assert.fail('expected the call to be refused');
}

const complianceAlert = {
  recipientEmail: 'user@example.com',
  recipientName: 'John Doe',
  subject: 'Compliance Alert',
  template: 'compliance-alert',
  data: {
    clientName: 'ACME Corp',
    complianceScore: 65,
    complianceLevel: 'amber',
    issues: ['Missing TIN Certificate', 'VAT Filing Overdue'],
    recommendations: ['Upload TIN Certificate', 'Submit VAT Filing'],
  },
  tenantId,
};

test('enqueueComplianceRefresh queues a refresh for the tenant', async () => {
  const job = await enqueueComplianceRefresh(tenantId, { triggeredBy: 'manual', priority: 1 });
  assert.equal(job.queue, 'compliance');
  assert.equal(job.name, 'compliance.refresh_tenant');
  assert.match(job.id, /^\d+$/);
});

test('enqueueComplianceRefresh returns the waiting refresh instead of a second one', async () => {
  const first = await enqueueComplianceRefresh(tenantId, { triggeredBy: 'manual' });
  const second = await enqueueComplianceRefresh(tenantId, { triggeredBy: 'manual', priority: 1 });
  assert.equal(second.id, first.id);
});

test('enqueueComplianceRefresh without a tenant queues the refresh of every tenant', async () => {
  const job = await enqueueComplianceRefresh(undefined, { triggeredBy: 'document_upload:4711' });
  assert.equal(job.name, 'compliance.refresh_all');
});

test('enqueueComplianceRefresh refuses a trigger of no known source, and names every bad field', async () => {
  const error = await rejection(enqueueComplianceRefresh(tenantId, { triggeredBy: 'bogus', priority: 0 }));
  assert.equal(error.status, 400);
  assert.deepEqual(Object.keys(error.errors).sort(), ['priority', 'triggeredBy']);
});

test('enqueueComplianceRefresh refuses a priority of 0 with the field named', async () => {
  const error = await rejection(enqueueComplianceRefresh(tenantId, { priority: 0 }));
  assert.equal(error.status, 400);
  assert.ok(error.errors.priority);
});

test('enqueueExpiryCheck without a tenant queues the check of every tenant', async () => {
  const job = await enqueueExpiryCheck();
  assert.deepEqual([job.queue, job.name], ['maintenance', 'notifications.check_expiry_all']);
  enqueued.expiryCheckAll = job.id;
});

test('enqueueExpiryCheck for a tenant queues that tenant’s check', async () => {
  const job = await enqueueExpiryCheck(tenantId);
  assert.deepEqual([job.queue, job.name], ['expiry-notification', 'notifications.check_expiry']);
  enqueued.expiryCheckTenant = job.id;
});

test('enqueueFilingReminder for a tenant queues that tenant’s reminders', async () => {
  const job = await enqueueFilingReminder(tenantId);
  assert.deepEqual([job.queue, job.name], ['filing-reminder', 'notifications.send_filing_reminders']);
});

test('enqueueFilingReminder takes a tenant slug as well as an id', async () => {
  const job = await enqueueFilingReminder(tenantSlug);
  assert.deepEqual([job.queue, job.name], ['filing-reminder', 'notifications.send_filing_reminders']);
});

test('enqueueFilingReminder for an unknown tenant is a 404', async () => {
  const error = await rejection(enqueueFilingReminder(987654321));
  assert.equal(error.status, 404);
  assert.equal(error.message, 'no tenant with id 987654321');
});

test('enqueueEmail queues the email on the email queue, and its id tells where it stands', async () => {
  const job = await enqueueEmail(complianceAlert);
  assert.deepEqual([job.queue, job.name], ['email', 'notifications.send_email']);
  const email = await getEmail(job.id);
  assert.equal(String(email.id), job.id);
  assert.ok(['queued', 'sending', 'sent'].includes(email.status));
  assert.equal(email.priority, 'normal');
});

test('enqueueEmail takes a priority', async () => {
  const job = await enqueueEmail({ ...complianceAlert, priority: 'urgent' });
  assert.equal((await getEmail(job.id)).priority, 'urgent');
});

test('getEmail of an unknown id is a 404', async () => {
  const error = await rejection(getEmail(987654321));
  assert.equal(error.status, 404);
});

test('enqueueEmail refuses a bad address and template with each field named', async () => {
  const error = await rejection(enqueueEmail({ ...complianceAlert, recipientEmail: 'nobody', template: 'nope' }));
  assert.equal(error.status, 400);
  assert.deepEqual(Object.keys(error.errors).sort(), ['recipientEmail', 'template']);
});

test('getAllQueueStats answers the four queues', async () => {
  const stats = await getAllQueueStats();
  assert.deepEqual(Object.keys(stats).sort(), ['compliance', 'email', 'expiry-notification', 'filing-reminder']);
  assert.equal(typeof stats.email.waiting, 'number');
  assert.equal(stats.email.isPaused, false);
});

test('getQueueStats counts the waiting email', async () => {
  const before = await getQueueStats('email');
  await enqueueEmail(complianceAlert);
  const after = await getQueueStats('email');
  assert.equal(after.waiting, before.waiting + 1);
});

test('getQueueStats of an unknown queue is a 404', async () => {
  const error = await rejection(getQueueStats('sms'));
  assert.equal(error.status, 404);
});

test('pauseQueue and resumeQueue switch the queue', async () => {
  assert.deepEqual(await pauseQueue('filing-reminder'), { queue: 'filing-reminder', paused: true, changed: true });
  assert.equal((await pauseQueue('filing-reminder')).changed, false);
  assert.deepEqual(await resumeQueue('filing-reminder'), { queue: 'filing-reminder', paused: false, changed: true });
});

test('pauseQueue counts waiting jobs as paused', async () => {
  await enqueueFilingReminder(tenantId);
  await pauseQueue('filing-reminder');
  try {
    const stats = await getQueueStats('filing-reminder');
    assert.equal(stats.waiting, 0);
    assert.ok(stats.paused >= 1);
    assert.equal(stats.isPaused, true);
  } finally {
    await resumeQueue('filing-reminder');
  }
});

test('cleanupQueue takes ages in milliseconds', async () => {
  const week = 7 * 24 * 60 * 60 * 1000;
  assert.deepEqual(await cleanupQueue('email', { completedAge: week, failedAge: week }), {
    queue: 'email',
    completed: 0,
    failed: 0,
  });
});

test('cleanupQueue refuses a negative age', async () => {
  const error = await rejection(cleanupQueue('email', { completedAge: -1 }));
  assert.equal(error.status, 400);
  assert.ok(error.errors.completedAge);
});

test('getNotificationPreferences answers every kind on the tenant default', async () => {
  const preferences = await getNotificationPreferences(tenantId, userId);
  assert.equal(preferences.tenantDefault, 'immediate');
  assert.deepEqual(preferences.preferences, {
    documentExpiry: null,
    filingReminder: null,
    complianceAlert: null,
    filingEscalation: null,
  });
  assert.equal(preferences.effective.filingReminder, 'immediate');
});

test('setNotificationPreferences changes the kinds given and keeps the others', async () => {
  await setNotificationPreferences(tenantId, userId, { documentExpiry: 'daily_digest', complianceAlert: 'off' });
  const preferences = await setNotificationPreferences(tenantId, userId, { complianceAlert: null });
  assert.deepEqual(preferences.preferences, {
    documentExpiry: 'daily_digest',
    filingReminder: null,
    complianceAlert: null,
    filingEscalation: null,
  });
  assert.deepEqual(await getNotificationPreferences(tenantId, userId), preferences);
});

test('setNotificationPreferences refuses a bad value with the kind named', async () => {
  const bad = { filingReminder: 'weekly' } as unknown as { filingReminder: 'off' };
  const error = await rejection(setNotificationPreferences(tenantId, userId, bad));
  assert.equal(error.status, 400);
  assert.deepEqual(Object.keys(error.errors), ['preferences.filingReminder']);
});

test('getNotificationPreferences of someone who is not a member is a 404', async () => {
  const error = await rejection(getNotificationPreferences(tenantId, 987654321));
  assert.equal(error.status, 404);
});

test('a wrong token is a 401', async () => {
  const error = await rejection(withEnv('KGC_JOBS_TOKEN', 'not-the-token', () => getAllQueueStats()));
  assert.equal(error.status, 401);
  assert.match(error.message, /not valid/);
});

test('a missing KGC_JOBS_URL is an error before any request', async () => {
  const error = await rejection(withEnv('KGC_JOBS_URL', undefined, () => getAllQueueStats()));
  assert.equal(error.status, 0);
  assert.match(error.message, /KGC_JOBS_URL/);
});

test('setReminderSettings sets the firm\'s thresholds and calendar, and refuses bad ones by field', async () => {
  const saved = await setReminderSettings(tenantId, { filingReminderDays: [3, 10], holidayCountry: 'us', holidaySubdivision: 'dc' });
  assert.deepEqual([saved.filingReminderDays, saved.holidayCountry, saved.holidaySubdivision], [[10, 3], 'US', 'DC']);
  assert.deepEqual(saved.effective.expiryReminderDays, [30, 14, 7]);
  const error = await rejection(setReminderSettings(tenantId, { expiryReminderDays: [400], holidaySubdivision: 'ZZ' }));
  assert.equal(error.status, 400);
  assert.ok(error.errors.expiryReminderDays);
  assert.ok(error.errors.holidaySubdivision);
  assert.deepEqual(await getReminderSettings(tenantId), saved);
  await setReminderSettings(tenantId, { filingReminderDays: null, holidayCountry: null, holidaySubdivision: null });
});
