-- Tipsters' chats sealed at rest (issue #20): the chat a tip came from is kept sealed
-- (ChaCha20-Poly1305, key from CUNJING_DATA_KEY) with a blind index (an HMAC of the chat id
-- under the database's key) to find a chat's tips; `chat_id` is 0 once a row is sealed.
-- The daemon seals the rows written before this at its next start (`seal_contacts`), and
-- phones in `tips.contact_phone` likewise.
ALTER TABLE tip_reporters ADD COLUMN chat_sealed TEXT;
ALTER TABLE tip_reporters ADD COLUMN chat_index TEXT;
DROP INDEX tip_reporters_chat;
CREATE INDEX tip_reporters_index ON tip_reporters(platform, chat_index);
