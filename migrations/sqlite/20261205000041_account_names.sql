-- A console account's own name (张三), shown where its actions appear (内勤 张三) instead of
-- its login name; the audit log keeps the login name (`web:neiqin`), which never changes.
ALTER TABLE web_users ADD COLUMN display_name TEXT;
