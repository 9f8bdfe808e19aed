-- Session keys are now stored sealed (AES-256-GCM, "v1.<nonce>.<ciphertext>"). Plaintext ones
-- written before are dropped rather than kept readable: the user's next wx.login stores a
-- sealed one (session keys are short-lived anyway).
UPDATE users SET session_key = '' WHERE session_key NOT LIKE 'v1.%';
