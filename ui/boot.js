/*
 * Runs first, before the modules are even loaded (a classic async script): when the page
 * opens on the task list, its data is asked for at once, in parallel with the modules,
 * rather than after them. tasks.js takes the answer (once) from window.vgridEarly.
 */
'use strict'
if (/^#\/tasks\/?$/.test(location.hash)) {
  window.vgridEarly = { path: '/tasks', response: fetch('/api/v1/tasks', { credentials: 'same-origin' }) }
}
