-- Rolled keys (issue 21): the successor of a notice's key, when it had one as the notice was recorded. Its
-- e-mails say so, and its sender asks whether the successor is in use yet (then the notice is cancelled).
ALTER TABLE notifier.notices ADD COLUMN replaced_by uuid;
