import csv
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from finai_models.config import load_settings
from finai_models.data import store
from finai_models.data.raw_schema import schemas
from finai_models.data.santander import convert_santander
from finai_models.errors import DataError

DEMOGRAPHICS = ["fecha_dato", "ncodpers", "ind_empleado", "pais_residencia", "sexo", "age", "fecha_alta",
                "ind_nuevo", "antiguedad", "indrel", "ult_fec_cli_1t", "indrel_1mes", "tiprel_1mes", "indresi",
                "indext", "conyuemp", "canal_entrada", "indfall", "tipodom", "cod_prov", "nomprov",
                "ind_actividad_cliente", "renta", "segmento"]


@pytest.fixture(scope="module")
def santander():
    return load_settings(dataset="santander")


def write_csv(path, settings, rows=None, drop=(), override=None):
    """A small file in the Kaggle train_ver2.csv format: 3 customers x 3 months."""
    header = [c for c in DEMOGRAPHICS + list(settings.product_columns) if c not in drop]
    rows = rows or []
    if not rows:
        for month in ("2015-01-28", "2015-02-28", "2015-03-28"):
            for code, sexo, age, renta, seg, active in [
                (1375586, "H", " 35", "87218.1", "02 - PARTICULARES", "1"),
                (1050611, "V", " 23", "NA", "03 - UNIVERSITARIO", "0"),
                (1050612, "H", "NA", "", "", "1"),
            ]:
                row = dict.fromkeys(header, "0")
                row.update(fecha_dato=month, ncodpers=str(code), sexo=sexo, age=age, fecha_alta="2012-08-10",
                           renta=renta, segmento=seg, ind_actividad_cliente=active, canal_entrada="KHL",
                           nomprov="MADRID", pais_residencia="ES")
                row["ind_cco_fin_ult1"] = "1"
                if code == 1375586 and month >= "2015-02-28":
                    row["ind_recibo_ult1"] = "1"
                rows.append(row)
    for i, row in enumerate(rows):
        row.update((override or {}).get(i, {}))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def test_converts_into_the_raw_schema(santander, tmp_path):
    csv_path = write_csv(tmp_path / "train_ver2.csv", santander)
    manifest = convert_santander(santander, csv_path, tmp_path / "raw", progress=False)
    assert manifest["months"] == ["2015-01", "2015-02", "2015-03"]
    assert manifest["has_card_transactions"] is False
    expected = schemas(santander.products)
    for table, schema in expected.items():
        assert pq.read_schema(tmp_path / "raw" / table / "2015-02.parquet").equals(schema)
    snap = pq.read_table(tmp_path / "raw" / "monthly_snapshots" / "2015-02.parquet").to_pylist()
    by_id = {r["customer_id"]: r for r in snap}
    assert by_id[1375586]["prod_direct_debit"] and by_id[1375586]["prod_current_account"]
    assert not by_id[1050611]["prod_direct_debit"]
    assert by_id[1375586]["income"] == pytest.approx(87218.1) and by_id[1050611]["income"] is None
    segments = [by_id[c]["segment"] for c in (1375586, 1050611, 1050612)]
    assert segments == ["02-PARTICULARES", "03-UNIVERSITARIO", "UNKNOWN"]
    assert by_id[1050611]["is_active"] is False
    cust = {r["customer_id"]: r for r in pq.read_table(tmp_path / "raw" / "customers" / "2015-02.parquet").to_pylist()}
    assert cust[1375586]["gender"] == "M" and cust[1050611]["gender"] == "F"
    assert cust[1375586]["birth_year"] == 1980 and cust[1050612]["birth_year"] is None
    assert pq.read_metadata(tmp_path / "raw" / "card_transactions" / "2015-02.parquet").num_rows == 0


@pytest.mark.parametrize(
    ("drop", "override", "message"),
    [
        (("renta",), None, r"missing column\(s\) 'renta'"),
        (("ind_tjcr_fin_ult1", "segmento"), None, r"missing column\(s\) 'segmento', 'ind_tjcr_fin_ult1'"),
        ((), {4: {"fecha_dato": "28/02/2015"}}, r"line 6: fecha_dato '28/02/2015' is not a date"),
        ((), {2: {"fecha_alta": "yesterday"}}, r"line 4: fecha_alta 'yesterday' is not a date"),
        ((), {1: {"ncodpers": "abc"}}, r"line 3: ncodpers 'abc' is not an integer"),
        ((), {0: {"ncodpers": "1050611"}}, r"customer 1050611 appears 2 times on 2015-01-28"),
    ],
)
def test_bad_file_gets_one_line_and_nothing_written(santander, tmp_path, drop, override, message):
    csv_path = write_csv(tmp_path / "bad.csv", santander, drop=drop, override=override)
    with pytest.raises(DataError, match=message) as info:
        convert_santander(santander, csv_path, tmp_path / "raw", progress=False)
    assert "\n" not in str(info.value)
    assert not (tmp_path / "raw" / store.MANIFEST).exists()


def test_cli_exit_code_and_message(santander, tmp_path):
    csv_path = write_csv(tmp_path / "bad.csv", santander, drop=("age",))
    proc = subprocess.run([sys.executable, "-m", "finai_models.cli", "santander", "--csv", str(csv_path),
                           "--out", str(tmp_path / "raw"), "--quiet"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: santander CSV {csv_path}: missing column(s) 'age'"
