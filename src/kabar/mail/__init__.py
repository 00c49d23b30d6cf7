"""Mail Kabar sends to people: invitations, password-reset and email-verification links.

Every mail is a row in ``mail_outbox`` written in the unit of work that asked for it, so a mail
exists if and only if its cause committed. With ``KABAR_SMTP_URL`` a ``mail.send`` job delivers it
(retried with the jobs system's backoff) and then clears its body, whose links are secrets;
without it (the demo) mails stay in the outbox for ``kabar mail list``.
"""
