"""Aggregates: verb methods guard, private ``@event`` methods assign; no clock, no I/O."""

from mqi_es.domain.alarm import Alarm
from mqi_es.domain.case import Case
from mqi_es.domain.case_name import CaseName
from mqi_es.domain.event_log import EventLog
from mqi_es.domain.host import Host
from mqi_es.domain.notification import Notification
from mqi_es.domain.refusal import Refusal
from mqi_es.domain.slot import Slot

__all__ = ["Alarm", "Case", "CaseName", "EventLog", "Host", "Notification", "Refusal", "Slot"]
