"""Model delivery: registered versions, the champion, and the pure promotion rule."""
