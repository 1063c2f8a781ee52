//! Every experiment's checks, declared and judged: declarations are
//! coherent and unambiguous, a quick run emits exactly the declared checks
//! (each at least once), every emitted check carries a verdict consistent
//! with its reference and tolerance, and every chart titles its axes and
//! draws the references its checks compare with.

use nextio_experiments::{
    ExperimentResult, Origin, Params, Reference, RunContext, SeriesKind, Verdict, all, execute,
};

#[test]
fn declarations_are_coherent_and_unambiguous() {
    for exp in all() {
        let specs = exp.checks();
        assert!(!specs.is_empty(), "{} declares no check", exp.name());
        for s in specs {
            if let Err(e) = s.validate() {
                panic!("{}: {e}", exp.name());
            }
        }
        for (i, a) in specs.iter().enumerate() {
            for b in &specs[i + 1..] {
                assert_ne!(a.id, b.id, "{}: `{}` declared twice", exp.name(), a.id);
                // A family `a` must not claim the ids of a check `a-…`.
                for (family, other) in [(a, b), (b, a)] {
                    assert!(
                        !(family.per_point && family.declares(other.id)),
                        "{}: `{}` would be read as a point of `{}`",
                        exp.name(),
                        other.id,
                        family.id
                    );
                }
            }
        }
    }
}

fn quick(name: &str) -> ExperimentResult {
    let exp = nextio_experiments::find(name).expect("registered");
    let params = Params::resolve(exp.name(), exp.params(), true, &[]).expect("defaults parse");
    execute(exp, RunContext::new(params, 1, true)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn every_experiment_emits_exactly_its_declared_checks_judged() {
    for exp in all() {
        let r = quick(exp.name());
        let specs = exp.checks();
        assert!(
            r.not_evaluated.is_empty(),
            "{}: declared but not evaluated in quick mode: {:?}",
            r.experiment,
            r.not_evaluated
        );
        for c in &r.checks {
            let spec = specs
                .iter()
                .find(|s| s.declares(&c.id))
                .unwrap_or_else(|| panic!("{}: `{}` undeclared", r.experiment, c.id));
            assert_eq!(
                (c.origin, c.reference, c.tolerance),
                (spec.origin, spec.reference, spec.tolerance),
                "{}/{}",
                r.experiment,
                c.id
            );
            assert!(
                c.model.is_finite(),
                "{}/{}: {}",
                r.experiment,
                c.id,
                c.model
            );
            match (c.paper, c.tolerance) {
                (None, _) => assert_eq!(c.verdict, Verdict::ModelOnly, "{}", c.id),
                (Some(p), Some(t)) => {
                    let within = t.admits(p, c.model);
                    assert_eq!(
                        c.verdict,
                        if within {
                            Verdict::Within
                        } else {
                            Verdict::Miss
                        },
                        "{}/{}",
                        r.experiment,
                        c.id
                    );
                }
                (Some(_), None) => {
                    panic!("{}/{}: a paper value without tolerance", r.experiment, c.id)
                }
            }
            if spec.reference != Reference::ClosedForm {
                assert_eq!(c.paper, spec.paper, "{}/{}", r.experiment, c.id);
            }
        }
        // The chart: every plotted field titled, the references drawn.
        for s in &r.series {
            for field in std::iter::once(&s.x).chain(&s.y) {
                assert!(
                    r.axes
                        .iter()
                        .any(|a| a.field == *field && !a.title.is_empty()),
                    "{}: no axis title for `{field}`",
                    r.experiment
                );
            }
        }
        let compared = r.checks.iter().any(|c| c.paper.is_some());
        let drawn = r.series.iter().any(|s| s.kind.is_reference());
        assert_eq!(
            compared, drawn,
            "{}: checks with references {compared}, references drawn {drawn}",
            r.experiment
        );
        let fitted_declared = specs.iter().any(|s| s.origin == Origin::Fitted);
        if fitted_declared {
            assert!(
                r.checks.iter().any(|c| c.origin == Origin::Fitted),
                "{}",
                r.experiment
            );
        }
        let closed_form_series = r.series.iter().any(|s| s.kind == SeriesKind::ClosedForm);
        if closed_form_series {
            assert!(
                r.checks.iter().any(|c| c.origin == Origin::Validation),
                "{}: a closed form is drawn but nothing is validated against it",
                r.experiment
            );
        }
    }
}
