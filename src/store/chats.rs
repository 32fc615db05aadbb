//! Queries of the chats area.
