"""Synthetic customers in the IBM Telco Customer Churn layout, byte-identical on every machine.

The default file's md5 is pinned in the committed `data/customers.csv.dvc`, and a fresh clone
regenerates the file instead of downloading it, so the same `(rows, seed)` must give the same bytes
on any platform and with any library version. That rules out everything whose output is not
guaranteed to be stable:

* Randomness comes only from `random.Random(seed).random()`, whose sequence Python guarantees
  across versions. `gauss`, `choice`, `shuffle`, `randint`, `choices` and numpy/pandas generators
  are not used: their algorithms may change between releases.
* Distributions are built from uniforms with `+ - * /` and `math.sqrt`, which IEEE 754 rounds
  correctly everywhere. No `exp`/`log`/`sin`/`**`: libm may differ in the last bit per platform.
  Categorical choices compare a uniform with cumulative weights, bell shapes are sums of uniforms
  and the churn probability uses the algebraic sigmoid `0.5 + 0.5 * z / sqrt(1 + z * z)`.
* Money is computed in integer cents and formatted with integer arithmetic; the file is written
  with plain text writes (UTF-8, `"\\n"` line endings), never through pandas.

Each row consumes the random stream in order, so a file of `n` rows is a prefix of a file of `m > n`
rows with the same seed. Customer ids are `NNNN-XXXXX`: the letters encode the row index through a
bijection of `[0, 26**5)`, so they are unique without remembering the ids already issued.

The data is meant to be realistic rather than separable: churn is drawn from a probability driven by
contract, tenure, charges, internet type, payment method, support add-ons and demographics, so the
classes overlap and a good model reaches a ROC AUC in the 0.80s, like on the real data set.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from math import sqrt
from pathlib import Path
from random import Random

from predictflow.core.schema import RAW_COLUMNS

DEFAULT_ROWS = 7043
DEFAULT_SEED = 42

_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_ID_SPACE = 26**5  # distinct five-letter blocks: 11,881,376
MAX_ROWS = _ID_SPACE
_ID_STRIDE = 7_368_787  # coprime with 26**5 = 2**5 * 13**5, so index -> letters is a bijection
_LETTERS_HIGH = tuple(a + b + c for a in _LETTERS for b in _LETTERS for c in _LETTERS)
_LETTERS_LOW = tuple(a + b for a in _LETTERS for b in _LETTERS)
_BATCH_ROWS = 8192
_MAX_TENURE = 72

_MIN_CENTS = 1825  # MonthlyCharges range of the real data set: 18.25 .. 118.75
_MAX_CENTS = 11875

_YES, _NO = "Yes", "No"
_NO_PHONE = "No phone service"
_NO_INTERNET = "No internet service"
_DSL, _FIBER, _NO_ISP = "DSL", "Fiber optic", "No"
_MONTHLY, _ONE_YEAR, _TWO_YEAR = "Month-to-month", "One year", "Two year"
_E_CHECK, _MAILED, _BANK, _CARD = (
    "Electronic check",
    "Mailed check",
    "Bank transfer (automatic)",
    "Credit card (automatic)",
)

# Add-on -> (P(Yes) with DSL, P(Yes) with fiber, extra P(Yes) at full tenure, price in cents).
_ADDONS: tuple[tuple[str, float, float, float, int], ...] = (
    ("OnlineSecurity", 0.32, 0.12, 0.36, 500),
    ("OnlineBackup", 0.31, 0.27, 0.38, 500),
    ("DeviceProtection", 0.27, 0.31, 0.38, 500),
    ("TechSupport", 0.32, 0.12, 0.36, 500),
    ("StreamingTV", 0.28, 0.52, 0.25, 1000),
    ("StreamingMovies", 0.28, 0.53, 0.25, 1000),
)
_NO_INTERNET_ADDONS = (_NO_INTERNET,) * len(_ADDONS)

Uniform = Callable[[], float]


def _check_args(rows: int, seed: int) -> None:
    """Reject argument values the generator cannot honour, naming the argument."""
    for name, value, low in (("rows", rows, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{name} must be an integer, got {value!r}")
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value!r}")
    if rows > MAX_ROWS:
        raise ValueError(f"rows must be <= {MAX_ROWS} (unique customer ids), got {rows!r}")


def _customer_id(index: int, offset: int, u: Uniform) -> str:
    """`NNNN-XXXXX`: random digits, letters a bijection of the row index (hence unique)."""
    code = (index * _ID_STRIDE + offset) % _ID_SPACE
    high, low = divmod(code, 676)
    return f"{int(u() * 10000):04d}-{_LETTERS_HIGH[high]}{_LETTERS_LOW[low]}"


def _bell(u: Uniform) -> float:
    """A bell-shaped draw in (-1, 1), mean 0, sd 1/3 (sum of three uniforms, rescaled)."""
    return (u() + u() + u() - 1.5) / 1.5


def _tenure(u: Uniform, partner: bool) -> int:
    """Months 0..72: many newcomers, a flat middle, a bump at 72 and ~0.15% brand-new (0)."""
    x = u()
    if x < 0.0015:
        return 0
    if x < (0.08 if partner else 0.025):
        return _MAX_TENURE
    v = u()
    if u() < (0.22 if partner else 0.45):
        return 1 + int(71 * v * v * v)
    return 1 + int(71 * v)


def _internet(u: Uniform, phone: bool, senior: bool) -> str:
    """Internet type: phone-less customers are on DSL (as in the real data); seniors like fiber."""
    if not phone:
        return _DSL
    x = u()
    dsl, fiber = (0.17, 0.73) if senior else (0.29, 0.44)
    return _DSL if x < dsl else _FIBER if x < dsl + fiber else _NO_ISP


def _addons(u: Uniform, internet: str, t: float) -> tuple[str, ...]:
    """The six internet add-ons; more likely with longer tenure, DSL vs fiber mix differs."""
    if internet == _NO_ISP:
        return _NO_INTERNET_ADDONS
    fiber = internet == _FIBER
    return tuple(
        _YES if u() < (p_fiber if fiber else p_dsl) + slope * t else _NO
        for _, p_dsl, p_fiber, slope, _ in _ADDONS
    )


def _contract(u: Uniform, t: float, internet: str) -> str:
    """Contract length, strongly tied to tenure (`t` is tenure / 72)."""
    two = 0.01 + 0.66 * t * t + (0.12 if internet == _NO_ISP else 0.0)
    one = 0.07 + 0.58 * t - 0.40 * t * t
    x = u()
    return _TWO_YEAR if x < two else _ONE_YEAR if x < two + one else _MONTHLY


def _payment(u: Uniform, contract: str, internet: str) -> str:
    """Payment method: electronic check goes with month-to-month, mailed check with no internet."""
    if internet == _NO_ISP:
        e_check, mailed, bank = 0.08, 0.50, 0.21
    elif contract == _MONTHLY:
        e_check, mailed, bank = 0.56, 0.15, 0.145
    elif contract == _ONE_YEAR:
        e_check, mailed, bank = 0.22, 0.15, 0.315
    else:
        e_check, mailed, bank = 0.12, 0.14, 0.37
    x = u()
    if x < e_check:
        return _E_CHECK
    if x < e_check + mailed:
        return _MAILED
    return _BANK if x < e_check + mailed + bank else _CARD


def _monthly_cents(
    u: Uniform, phone: bool, lines: str, internet: str, addons: tuple[str, ...]
) -> int:
    """Price from the services (fiber costs more, each add-on adds) plus a little noise."""
    cents = (2000 if phone else 0) + (500 if lines == _YES else 0)
    cents += 5000 if internet == _FIBER else 2500 if internet == _DSL else 0
    for value, addon in zip(addons, _ADDONS, strict=True):
        if value == _YES:
            cents += addon[4]
    cents += int(250 * _bell(u))
    return min(max(cents, _MIN_CENTS), _MAX_CENTS)


def _total_cents(u: Uniform, tenure: int, monthly: int) -> int:
    """Billed so far: first month at today's price, later months within about +-8% of it."""
    if tenure == 0:
        return 0
    return monthly + int((tenure - 1) * monthly * (1.0 + 0.08 * _bell(u)) + 0.5)


def _money(cents: int) -> str:
    """Cents as a fixed two-decimal string, without float formatting."""
    return f"{cents // 100}.{cents % 100:02d}"


def _sigmoid(z: float) -> float:
    """Algebraic sigmoid onto (0, 1): like the logistic, but only `* / + sqrt` (exact in IEEE)."""
    return 0.5 + 0.5 * z / sqrt(1.0 + z * z)


def _churn(
    u: Uniform,
    *,
    senior: bool,
    partner: bool,
    dependents: bool,
    tenure: int,
    internet: str,
    addons: tuple[str, ...],
    contract: str,
    paperless: bool,
    payment: str,
    monthly: int,
) -> str:
    """Draw churn from a probability (not a rule) so the classes overlap like the real ones."""
    z = -2.40 + 1.7 * 12.0 / (12.0 + tenure) + 0.006 * (monthly - 6500) / 100.0
    z += 0.75 if contract == _MONTHLY else -0.45 if contract == _ONE_YEAR else -1.1
    z += 0.35 if internet == _FIBER else -0.35 if internet == _NO_ISP else 0.0
    z += 0.35 if payment == _E_CHECK else 0.0
    z += 0.22 if addons[0] == _NO else 0.0  # OnlineSecurity
    z += 0.22 if addons[3] == _NO else 0.0  # TechSupport
    z += (0.15 if senior else 0.0) + (0.12 if paperless else 0.0)
    z -= (0.08 if partner else 0.0) + (0.12 if dependents else 0.0)
    z += 1.0 * _bell(u)  # what the data does not show: service quality, competitors, moving
    return _YES if u() < _sigmoid(z) else _NO


def _row(u: Uniform, index: int, offset: int) -> tuple[str, ...]:
    """One customer as the raw file's strings, in RAW_COLUMNS order."""
    ident = _customer_id(index, offset, u)
    gender = "Female" if u() < 0.495 else "Male"
    senior = u() < 0.162
    partner = u() < 0.483
    dependents = u() < (0.55 if partner else 0.11) * (0.5 if senior else 1.0)
    tenure = _tenure(u, partner)
    t = tenure / _MAX_TENURE
    phone = u() < 0.903
    lines = (_YES if u() < 0.30 + 0.36 * t else _NO) if phone else _NO_PHONE
    internet = _internet(u, phone, senior)
    addons = _addons(u, internet, t)
    contract = _contract(u, t, internet)
    paperless_p = 0.77 if internet == _FIBER else 0.56 if internet == _DSL else 0.29
    paperless = u() < paperless_p
    payment = _payment(u, contract, internet)
    monthly = _monthly_cents(u, phone, lines, internet, addons)
    total = _money(_total_cents(u, tenure, monthly)) if tenure else ""
    churn = _churn(
        u,
        senior=senior,
        partner=partner,
        dependents=dependents,
        tenure=tenure,
        internet=internet,
        addons=addons,
        contract=contract,
        paperless=paperless,
        payment=payment,
        monthly=monthly,
    )
    return (
        ident, gender, "1" if senior else "0", _YES if partner else _NO,
        _YES if dependents else _NO, str(tenure), _YES if phone else _NO, lines, internet,
        *addons, contract, _YES if paperless else _NO, payment, _money(monthly), total, churn,
    )  # fmt: skip


def iter_rows(rows: int, seed: int) -> Iterator[tuple[str, ...]]:
    """Yield `rows` data rows (header excluded) as strings in RAW_COLUMNS order."""
    _check_args(rows, seed)
    return _generate(rows, seed)


def _generate(rows: int, seed: int) -> Iterator[tuple[str, ...]]:
    """The generator behind `iter_rows` (kept apart so bad arguments fail at call time)."""
    u = Random(seed).random
    offset = int(u() * _ID_SPACE)
    for index in range(rows):
        yield _row(u, index, offset)


def write_csv(path: Path | str, rows: int = DEFAULT_ROWS, seed: int = DEFAULT_SEED) -> None:
    """Write header and rows to `path` atomically: a temp file beside it, then `os.replace`."""
    _check_args(rows, seed)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with open(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(",".join(RAW_COLUMNS) + "\n")
            batch: list[str] = []
            for row in _generate(rows, seed):
                batch.append(",".join(row))
                if len(batch) == _BATCH_ROWS:
                    handle.write("\n".join(batch) + "\n")
                    batch.clear()
            if batch:
                handle.write("\n".join(batch) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
