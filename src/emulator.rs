//! The bundled QBO emulator, startable from Python (`qbo_rs.testing.QboEmulator`).
//! Configuration crosses as JSON so the Python face can pass keyword arguments straight
//! through to `qbo_emulator::EmulatorConfig` / `Knobs` (serde rejects unknown keys).

use pyo3::prelude::*;

use crate::errors::config_error;
use crate::runtime::runtime;

#[pyclass(module = "qbo_rs")]
pub struct NativeEmulator {
    inner: Option<qbo_emulator::Emulator>,
}

fn json_loads<'py>(py: Python<'py>, text: String) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (text,))
}

impl NativeEmulator {
    fn running(&self, py: Python<'_>) -> PyResult<&qbo_emulator::Emulator> {
        self.inner.as_ref().ok_or_else(|| config_error(py, "the emulator is stopped"))
    }
}

#[pymethods]
impl NativeEmulator {
    /// Starts the emulator on the shared runtime from a JSON `EmulatorConfig`.
    #[staticmethod]
    fn start(py: Python<'_>, config_json: &str) -> PyResult<Self> {
        let config: qbo_emulator::EmulatorConfig = serde_json::from_str(config_json).map_err(|e| config_error(py, format!("emulator configuration: {e}")))?;
        let emu =
            py.detach(|| runtime().block_on(qbo_emulator::Emulator::start(config))).map_err(|e| config_error(py, format!("emulator failed to start: {e}")))?;
        Ok(NativeEmulator { inner: Some(emu) })
    }

    #[getter]
    fn base_url(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.running(py)?.base_url())
    }

    #[getter]
    fn token_url(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.running(py)?.token_url())
    }

    #[getter]
    fn realm_id(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.running(py)?.realm_id().to_string())
    }

    #[getter]
    fn client_id(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.running(py)?.client_id().to_string())
    }

    #[getter]
    fn client_secret(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.running(py)?.client_secret().to_string())
    }

    #[getter]
    fn refresh_token(&self, py: Python<'_>) -> PyResult<String> {
        Ok(self.running(py)?.initial_refresh_token().to_string())
    }

    /// Every record of `entity` that exists now (inactive ones included) as dicts: id, sync_token,
    /// last_updated_time (as served), last_updated_utc, active.
    fn truth<'py>(&self, py: Python<'py>, entity: &str) -> PyResult<Bound<'py, PyAny>> {
        let rows = self.running(py)?.truth(entity).map_err(|e| config_error(py, e.to_string()))?;
        let text = serde_json::to_string(&rows).map_err(|e| config_error(py, e.to_string()))?;
        json_loads(py, text)
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(&self.running(py)?.stats()).map_err(|e| config_error(py, e.to_string()))?;
        json_loads(py, text)
    }

    fn knobs<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let text = serde_json::to_string(&self.running(py)?.knobs()).map_err(|e| config_error(py, e.to_string()))?;
        json_loads(py, text)
    }

    /// Replaces the run-time knobs with a JSON `Knobs` object (the Python face merges).
    fn set_knobs(&self, py: Python<'_>, knobs_json: &str) -> PyResult<()> {
        let knobs: qbo_emulator::Knobs = serde_json::from_str(knobs_json).map_err(|e| config_error(py, format!("emulator knobs: {e}")))?;
        self.running(py)?.set_knobs(knobs);
        Ok(())
    }

    fn edit<'py>(&self, py: Python<'py>, entity: &str, id: &str) -> PyResult<Bound<'py, PyAny>> {
        let row = self.running(py)?.edit(entity, id).map_err(|e| config_error(py, e.to_string()))?;
        let text = serde_json::to_string(&row).map_err(|e| config_error(py, e.to_string()))?;
        json_loads(py, text)
    }

    /// Deletes one record now (Invoice: hard delete; Customer, Item: made inactive); the
    /// `Deletion` as a dict.
    fn delete<'py>(&self, py: Python<'py>, entity: &str, id: &str) -> PyResult<Bound<'py, PyAny>> {
        let done = self.running(py)?.delete(entity, id).map_err(|e| config_error(py, e.to_string()))?;
        let text = serde_json::to_string(&done).map_err(|e| config_error(py, e.to_string()))?;
        json_loads(py, text)
    }

    /// Creates one record now (or re-creates the Id of a deleted Invoice); its JSON as served.
    #[pyo3(signature = (entity, id=None))]
    fn create<'py>(&self, py: Python<'py>, entity: &str, id: Option<&str>) -> PyResult<Bound<'py, PyAny>> {
        let json = self.running(py)?.create(entity, id).map_err(|e| config_error(py, e.to_string()))?;
        json_loads(py, String::from_utf8_lossy(&json).into_owned())
    }

    /// The hard-deleted records of `entity` as dicts: id, deleted_at (UTC, milliseconds).
    fn deleted<'py>(&self, py: Python<'py>, entity: &str) -> PyResult<Bound<'py, PyAny>> {
        let rows = self.running(py)?.deleted(entity).map_err(|e| config_error(py, e.to_string()))?;
        let text = serde_json::to_string(&rows).map_err(|e| config_error(py, e.to_string()))?;
        json_loads(py, text)
    }

    fn expire_access_tokens(&self, py: Python<'_>) -> PyResult<()> {
        self.running(py)?.expire_access_tokens();
        Ok(())
    }

    fn stop(&mut self, py: Python<'_>) {
        if let Some(emu) = self.inner.take() {
            py.detach(|| runtime().block_on(emu.shutdown()));
        }
    }
}
