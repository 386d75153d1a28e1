"""Tables of the feedback store (SQLAlchemy 2 ORM; the same schema on SQLite and PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class AnnotatorRow(Base):
    """A pseudonymous person or a simulated teacher. No contact details unless the owner opts in."""

    __tablename__ = "annotators"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16), default="simulated")  # human | simulated
    token_hash: Mapped[str | None] = mapped_column(String(128), nullable=True, unique=True)
    #: when the invite token stops working (None: never); revoking an invite clears token_hash
    token_expires_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    role: Mapped[str] = mapped_column(String(16), default="annotator")  # annotator | admin
    created_at: Mapped[float] = mapped_column(Float)
    withdrawn_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    meta: Mapped[dict | None] = mapped_column(JSON, nullable=True)


class SessionRow(Base):
    """A signed-in browser: the cookie holds a random secret, this row its hash (never the invite token)."""

    __tablename__ = "sessions"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)  # sha256 of the cookie's secret
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"), index=True)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    ended_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class ConsentRow(Base):
    """One consent decision: which text version was shown and whether the person agreed."""

    __tablename__ = "consents"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"), index=True)
    version: Mapped[str] = mapped_column(String(64))
    text_hash: Mapped[str] = mapped_column(String(64))
    agreed: Mapped[bool] = mapped_column(Boolean)
    at: Mapped[float] = mapped_column(Float)


class RunRow(Base):
    __tablename__ = "runs"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    created_at: Mapped[float] = mapped_column(Float)
    config: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    status: Mapped[str] = mapped_column(String(16), default="running")


class QueryRow(Base):
    __tablename__ = "queries"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(8))
    payload: Mapped[dict] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    assigned_to: Mapped[str | None] = mapped_column(ForeignKey("annotators.id"), nullable=True, index=True)
    gold_value: Mapped[float | None] = mapped_column(Float, nullable=True)  # attention checks seeded by the owner


class FeedbackRow(Base):
    __tablename__ = "feedback"
    __table_args__ = (
        UniqueConstraint("annotator_id", "client_key", name="uq_feedback_client_key"),
        Index("ix_feedback_query_annotator", "query_id", "annotator_id"),
        # one answer per person and query for answers with a client key (every web answer has one)
        Index("uq_feedback_one_answer", "query_id", "annotator_id", unique=True,
              sqlite_where=text("client_key IS NOT NULL"), postgresql_where=text("client_key IS NOT NULL")),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    query_id: Mapped[str] = mapped_column(ForeignKey("queries.id"), index=True)
    annotator_id: Mapped[str] = mapped_column(ForeignKey("annotators.id"), index=True)
    value: Mapped[float | None] = mapped_column(Float, nullable=True)
    data: Mapped[dict | None] = mapped_column(JSON, nullable=True)
    asked_at: Mapped[float] = mapped_column(Float)
    answered_at: Mapped[float] = mapped_column(Float)
    step: Mapped[int | None] = mapped_column(Integer, nullable=True)
    client_key: Mapped[str | None] = mapped_column(String(128), nullable=True)
    withdrawn: Mapped[bool] = mapped_column(Boolean, default=False, index=True)


class ModelRow(Base):
    """A trained artefact (reward model or policy) and whether it must be retrained."""

    __tablename__ = "models"
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id"), nullable=True, index=True)
    kind: Mapped[str] = mapped_column(String(16))  # reward | policy
    path: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float)
    flagged: Mapped[str | None] = mapped_column(Text, nullable=True)  # why it must be retrained


class LineageRow(Base):
    """Which feedback rows trained which model: 'models that used this person' is one join."""

    __tablename__ = "lineage"
    model_id: Mapped[str] = mapped_column(ForeignKey("models.id"), primary_key=True)
    feedback_id: Mapped[int] = mapped_column(ForeignKey("feedback.id"), primary_key=True, index=True)


class AuditRow(Base):
    """Append-only, hash-chained log entry (see :mod:`rlhf_gym.store.audit`)."""

    __tablename__ = "audit_log"
    #: two entries can never follow the same one: the database refuses a forked chain
    __table_args__ = (UniqueConstraint("prev_hash", name="uq_audit_prev_hash"),)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[float] = mapped_column(Float)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(32), index=True)
    payload: Mapped[dict] = mapped_column(JSON)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The latest audit entry (seq, hash) with a MAC, updated in the same transaction as each append.

    The chain alone cannot show that its last entries were deleted; comparing the chain's end with
    this checkpoint can (see :func:`rlhf_gym.store.audit.verify`).
    """

    __tablename__ = "audit_head"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # always 1
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))
    mac: Mapped[str] = mapped_column(String(64))
