//! A module plan being staged through the ABI (spec/abi.md, Adapters): the plan's bytes from
//! `trlm_plan_begin`, then each module's bytes from `trlm_plan_module`, checked against the plan
//! as they arrive (count, size, digest), until `trlm_plan_check` or `trlm_plan_apply`.

use crate::adapter::plan::check_module;
use crate::adapter::Plan;
use crate::error::{Error, ErrorCode, Result};
use alloc::format;
use alloc::vec::Vec;

/// A staged plan and the modules received so far (plan order).
pub struct PlanStage {
    plan_bytes: Vec<u8>,
    plan: Plan,
    modules: Vec<Vec<u8>>,
}

fn copy(data: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    v.try_reserve_exact(data.len()).map_err(|_| {
        Error::new(
            ErrorCode::OutOfMemory,
            format!("cannot allocate {} bytes for the {what}", data.len()),
        )
    })?;
    v.extend_from_slice(data);
    Ok(v)
}

impl PlanStage {
    /// Parses `plan` (which checks, among its rules, that its modules fit
    /// `MAX_PLAN_STAGED_BYTES` together: [`Plan::parse`]).
    ///
    /// Errors: `InvalidPlan`, `LimitExceeded` (the plan text), `BudgetExceeded`, `OutOfMemory`.
    pub fn begin(plan: &[u8]) -> Result<PlanStage> {
        let parsed = Plan::parse(plan)?;
        // Room for every module's entry now: appending one cannot reallocate.
        let mut modules = Vec::new();
        modules
            .try_reserve_exact(parsed.modules.len())
            .map_err(|_| Error::new(ErrorCode::OutOfMemory, "cannot allocate the plan stage"))?;
        Ok(PlanStage {
            plan_bytes: copy(plan, "plan")?,
            plan: parsed,
            modules,
        })
    }

    /// The staged plan.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Appends the next module (copied) after checking it is the one the plan lists next.
    ///
    /// Errors: `ModuleDigestMismatch` (more modules than the plan lists, or another size or file
    /// digest), `OutOfMemory`.
    pub fn module(&mut self, bytes: &[u8]) -> Result<()> {
        let i = self.modules.len();
        let Some(m) = self.plan.modules.get(i) else {
            return Err(Error::new(
                ErrorCode::ModuleDigestMismatch,
                format!("the plan lists {} modules; this is one more", i),
            ));
        };
        check_module(i, m, bytes)?;
        self.modules.push(copy(bytes, "module")?);
        Ok(())
    }

    /// The plan's bytes and the modules received, as `Session::apply_plan` takes them.
    pub fn parts(&self) -> (&[u8], Vec<&[u8]>) {
        (
            &self.plan_bytes,
            self.modules.iter().map(|m| m.as_slice()).collect(),
        )
    }
}
