"""Reading an RFC 3464 delivery status notification."""
from sink import parse


class Report:
    """The parts of an RFC 3464 multipart/report."""

    def __init__(self, raw):
        self.raw = raw
        self.msg = parse(raw)
        assert self.msg.get_content_type() == "multipart/report", self.msg.get_content_type()
        assert self.msg.get_param("report-type") == "delivery-status"
        self.parts = self.msg.get_payload()
        assert self.parts[0].get_content_type() == "text/plain"
        assert self.parts[1].get_content_type() == "message/delivery-status"
        blocks = self.parts[1].get_payload()
        self.per_message = blocks[0]
        self.per_recipient = blocks[1:]
        assert self.per_recipient, "no per-recipient block"

    def recipient(self, addr):
        for block in self.per_recipient:
            if addr.lower() in (block.get("Final-Recipient") or "").lower():
                return block
        raise AssertionError("{} not in report: {}".format(addr, self.raw[:3000]))

    @property
    def returned(self):
        return self.parts[2] if len(self.parts) > 2 else None
