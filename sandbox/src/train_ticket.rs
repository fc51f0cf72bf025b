//! Train-Ticket as the simulation models it: which services run a JVM, their Java packages
//! (FudanSELab/train-ticket, `<service>/src/main/java/<package>/`) and the classes and methods
//! the simulated traffic runs — what the JVM faults name, the sandbox's coverage agents dump and
//! its class files hold.

/// The Java services and their packages (the 41 the published dataset has coverage for): the
/// package of `<service>/src/main/java/<package>/…Application.java` in FudanSELab/train-ticket.
/// Two services share `fdse.microservice`; an agent only sees its own JVM, so that is harmless.
/// ttplan's `instrument` uses this table as `TRAIN_TICKET_PACKAGES` (the agents' `includes`).
pub const JAVA_SERVICES: &[(&str, &str)] = &[
    ("ts-admin-basic-info-service", "adminbasic"),
    ("ts-admin-order-service", "adminorder"),
    ("ts-admin-route-service", "adminroute"),
    ("ts-admin-travel-service", "admintravel"),
    ("ts-admin-user-service", "adminuser"),
    ("ts-assurance-service", "assurance"),
    ("ts-auth-service", "auth"),
    ("ts-basic-service", "fdse.microservice"),
    ("ts-cancel-service", "cancel"),
    ("ts-config-service", "config"),
    ("ts-consign-price-service", "consignprice"),
    ("ts-consign-service", "consign"),
    ("ts-contacts-service", "contacts"),
    ("ts-delivery-service", "delivery"),
    ("ts-execute-service", "execute"),
    ("ts-food-delivery-service", "food_delivery"),
    ("ts-food-service", "foodsearch"),
    ("ts-gateway-service", "gateway"),
    ("ts-inside-payment-service", "inside_payment"),
    ("ts-notification-service", "notification"),
    ("ts-order-other-service", "other"),
    ("ts-order-service", "order"),
    ("ts-payment-service", "com.trainticket"),
    ("ts-preserve-other-service", "preserveOther"),
    ("ts-preserve-service", "preserve"),
    ("ts-price-service", "price"),
    ("ts-rebook-service", "rebook"),
    ("ts-route-plan-service", "plan"),
    ("ts-route-service", "route"),
    ("ts-seat-service", "seat"),
    ("ts-security-service", "security"),
    ("ts-station-food-service", "food"),
    ("ts-station-service", "fdse.microservice"),
    ("ts-train-food-service", "trainFood"),
    ("ts-train-service", "train"),
    ("ts-travel-plan-service", "travelplan"),
    ("ts-travel-service", "travel"),
    ("ts-travel2-service", "travel2"),
    ("ts-user-service", "user"),
    ("ts-verification-code-service", "verifycode"),
    ("ts-wait-order-service", "waitorder"),
];

/// Methods of the business classes the campaign's JVM faults name (plans/lv_c_*.yaml), plus
/// the ones the simulated traffic runs; any other Java service gets [`DEFAULT_METHODS`].
const METHODS: &[(&str, &[&str])] = &[
    (
        "ts-order-service",
        &[
            "create",
            "queryOrders",
            "getOrderById",
            "modifyOrder",
            "getSoldTickets",
            "checkSecurityAboutOrder",
        ],
    ),
    ("ts-security-service", &["check", "findAllSecurityConfig"]),
    (
        "ts-travel-service",
        &[
            "getTripAllDetailInfo",
            "query",
            "getRouteByTripId",
            "queryAll",
        ],
    ),
    (
        "ts-preserve-service",
        &["preserve", "getTripAllDetailInformation", "createFoodOrder"],
    ),
    ("ts-auth-service", &["getToken", "createDefaultAuthUser"]),
    ("ts-user-service", &["findByUserId", "getAllUsers"]),
    // The other services the simulated traffic's call graph runs (sim/traffic_model.rs).
    (
        "ts-contacts-service",
        &["findContactsById", "findContactsByAccountId"],
    ),
    ("ts-station-service", &["queryForId", "queryById"]),
    (
        "ts-seat-service",
        &["distributeSeat", "getLeftTicketOfInterval"],
    ),
    ("ts-basic-service", &["queryForTravel", "queryForTravels"]),
    ("ts-notification-service", &["preserveSuccess"]),
];

pub const DEFAULT_METHODS: &[&str] = &["query", "findAll"];

/// `ts-preserve-other-service` → `PreserveOther`.
pub fn camel(app: &str) -> String {
    app.trim_start_matches("ts-")
        .trim_end_matches("-service")
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The package of a Java service, `None` for the non-Java ones.
pub fn package(app: &str) -> Option<&'static str> {
    JAVA_SERVICES
        .iter()
        .find(|(a, _)| *a == app)
        .map(|(_, p)| *p)
}

/// The classes (binary names with dots) and their methods of a Java service: its controller
/// (one method per business method, prefixed by the HTTP handler's role) and its service
/// implementation, `<package>.service.<Camel>ServiceImpl`, whose methods the JVM faults name.
pub fn classes(app: &str) -> Vec<(String, Vec<String>)> {
    let Some(pkg) = package(app) else {
        return Vec::new();
    };
    let name = camel(app);
    let methods: Vec<String> = METHODS
        .iter()
        .find(|(a, _)| *a == app)
        .map_or(DEFAULT_METHODS, |(_, m)| *m)
        .iter()
        .map(|m| m.to_string())
        .collect();
    let handlers = methods
        .iter()
        .map(|m| format!("handle{}", camel(m)))
        .collect();
    vec![
        (format!("{pkg}.controller.{name}Controller"), handlers),
        (format!("{pkg}.service.{name}ServiceImpl"), methods),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_plans_classes_exist() {
        for (app, class, method) in [
            (
                "ts-order-service",
                "order.service.OrderServiceImpl",
                "create",
            ),
            (
                "ts-security-service",
                "security.service.SecurityServiceImpl",
                "check",
            ),
            (
                "ts-travel-service",
                "travel.service.TravelServiceImpl",
                "getTripAllDetailInfo",
            ),
        ] {
            let cs = classes(app);
            let (_, ms) = cs.iter().find(|(c, _)| c == class).unwrap();
            assert!(ms.iter().any(|m| m == method), "{app}: {cs:?}");
        }
        assert_eq!(camel("ts-preserve-other-service"), "PreserveOther");
        assert!(classes("ts-ui-dashboard").is_empty());
        assert_eq!(JAVA_SERVICES.len(), 41);
    }
}
